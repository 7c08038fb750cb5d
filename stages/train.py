"""Stage `train`: fit CRA (or the TempCLIP baseline) on the training split and keep the best checkpoint.

Seeds are set once; AdamW/Adam (amsgrad as in the paper) with linear warm-up then cosine decay and
gradient clipping. The frame features are standardised with the training frames' statistics (stored in
the checkpoint; `model.standardize_video`). Each batch carries the VQ question choices
(`train.vq_negatives`, `train.vq_same_video`) and, for a `train.grounding_supervision` share of the
training questions (0 by default: weakly supervised, as the paper), their ground-truth frames.

Every epoch logs the mean training losses, the learning rate, GSG's sigma and the validation metrics
with dvclive. The kept checkpoint is the epoch with the best validation `train.select_by`: Acc@QA by
default, as the official code (`stat.monitor.metric: acc`); `acc_gqa` / `miop` use the
`train.select_rule` grounding rule and fall back to Acc@QA when the validation split has no grounding
labels; without a validation split the last epoch is kept. dvclive's summary (the DVC metrics) holds the
kept epoch and its validation numbers; `paths.plots/training_curves.png` (a DVC image plot) draws the history.

A killed run started again continues from its last complete epoch and ends as an uninterrupted one would
(`pipeline.training.resume`). With `train.launch` asking for several processes, the stage re-runs itself
under torchrun and trains with DistributedDataParallel, each process taking its slice of every global
batch (`pipeline.training.distributed`, which says what that changes); with one process nothing changes.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.cra import CRA
from models.losses import compute_losses
from pipeline.artifacts.checkpoint import save_checkpoint
from pipeline.config import Params, to_dict
from pipeline.distributed import RankContext, needs_relaunch, rank_context, relaunch
from pipeline.evaluation.plots import TRAINING_CURVES, training_curves
from pipeline.evaluation.predict import predict_sharded, score_split
from pipeline.runtime import get_logger, progress, seed_everything
from pipeline.training.batches import (
    QuestionSampler,
    TrainingInputs,
    batch_indices,
    load_feature_bank,
    load_split,
    make_batch,
    read_qa_table,
)
from pipeline.training.distributed import (
    NullLive,
    local_batch,
    loss_scale,
    reduce_sums,
    seed_dropout,
    wrap_model,
)
from pipeline.training.history import kept_epoch_summary, read_history
from pipeline.training.resume import Resume

log = get_logger("train")

RERUN_HINT = "Run it again (`dvc repro`): training resumes from the last epoch it completed."


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW (decoupled decay) or Adam; no weight decay on biases, norms, the logit scale and sigma."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(groups, lr=cfg.lr, amsgrad=cfg.amsgrad)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to the base lr over `warmup_steps`, then cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress_ = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def open_live(log_dir: str, resume: bool = False):
    """A dvclive logger that never writes dvc.yaml (plots and metrics are declared there by hand); with
    `resume`, it appends to the files already in `log_dir` instead of clearing them."""
    from scmrepo.exceptions import SCMError

    from dvclive import Live  # imported here: it is slow to import and only training logs

    class _Live(Live):
        def _init_dvc(self) -> None:
            try:
                super()._init_dvc()
            except SCMError as err:
                # dvclive 3.49 raises (instead of warning) in a git repo without commits; the
                # metrics and plots files are still written, only the DVC experiment link is lost.
                log.warning("dvclive: %s; logging without the DVC experiment link (make a first commit)", err)
                self._dvc_file = None

    return _Live(dir=log_dir, save_dvc_exp=False, dvcyaml=None, resume=resume)


def selection_value(result: dict[str, Any], cfg) -> tuple[str, float]:
    """The validation number the best epoch is chosen by (and its name)."""
    rule_result = result["rules"].get(cfg.select_rule)
    if cfg.select_by == "acc_qa" or rule_result is None:
        return "acc_qa", result["acc_qa"]
    return f"{cfg.select_by}@{cfg.select_rule}", rule_result["overall"][cfg.select_by]


def video_statistics(bank, questions) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std (Dv,) of the frames of `questions`' videos (each video counted once)."""
    rows = np.unique(questions.video_rows)
    frames = np.asarray(bank.visual.features[rows], dtype=np.float64).reshape(-1, bank.visual_dim)  # (V*T, Dv)
    std = frames.std(axis=0)
    # A constant dimension (std 0) is left unscaled rather than divided by zero.
    std = np.where(std > 1e-8, std, 1.0)
    return torch.from_numpy(frames.mean(axis=0).astype(np.float32)), torch.from_numpy(std.astype(np.float32))


def run(params: Params) -> None:
    if needs_relaunch(params.train.launch):  # several processes wanted: run this stage under torchrun
        relaunch("train", params, params.train.launch, RERUN_HINT)
        return
    with rank_context(params.train.device, "train.device") as ctx:
        train(params, ctx)


def train(params: Params, ctx: RankContext) -> None:
    cfg = params.train
    if not ctx.is_main:  # with several processes rank 0 reports progress; the others only warn
        log.setLevel(logging.WARNING)
    seed_everything(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = ctx.device
    bank = load_feature_bank(params)
    qa = read_qa_table(params)
    train_questions = load_split(qa, params.data.train_split, bank)
    val_questions = load_split(qa, params.data.val_split, bank) if params.data.val_split else None
    model = CRA.from_config(
        params,
        visual_dim=bank.visual_dim,
        text_dim=bank.text_dim,
        visual_dictionary=bank.visual_dictionary,
        language_dictionary=bank.language_dictionary,
    )
    model.backbone.set_video_statistics(*video_statistics(bank, train_questions))
    model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "training %s (%d trainable parameters) on %d questions, validating on %d, device %s, %d process(es)",
        params.model.variant,
        trainable,
        len(train_questions),
        len(val_questions) if val_questions else 0,
        device,
        ctx.world_size,
    )
    optimizer = build_optimizer(model, cfg)
    steps_per_epoch = sum(
        1 for _ in batch_indices(len(train_questions), cfg.batch_size, True, np.random.default_rng(0))
    )
    scheduler = warmup_cosine(optimizer, round(cfg.warmup_epochs * steps_per_epoch), cfg.epochs * steps_per_epoch)
    sampler = QuestionSampler(train_questions, cfg.vq_negatives, cfg.vq_same_video)
    # Which training questions supervise the grounding: a fixed, seeded share (0 = weakly supervised).
    supervised = np.random.default_rng([cfg.seed, 1]).random(len(train_questions)) < cfg.grounding_supervision
    if cfg.grounding_supervision > 0:
        labelled = int((supervised & (train_questions.frame_labels.sum(axis=1) > 0)).sum())
        log.info("grounding supervision on %d of %d training questions", labelled, len(train_questions))

    rng = np.random.default_rng(cfg.seed)
    best_value, best_state = -math.inf, None
    resume = Resume(params, ctx)
    saved = resume.load()  # the last complete epoch of a killed run with the same params and inputs
    seed_dropout(cfg.seed, ctx)
    if saved is not None:
        saved.restore(model, optimizer, scheduler, rng, ctx)
        best_value, best_state = saved.best_value, saved.best_state
    trainer = wrap_model(model, ctx)  # DistributedDataParallel with several processes
    first = 1 if saved is None else saved.epoch + 1
    # dvcyaml=None: the plots and metrics are declared in dvc.yaml by hand, never rewritten by dvclive.
    with open_live(params.paths.train_log, resume=saved is not None) if ctx.is_main else NullLive() as live:
        if saved is not None:
            live.step = saved.live_step
        for epoch in progress(range(first, cfg.epochs + 1), desc="train", total=cfg.epochs - first + 1, unit="epoch"):
            model.train()
            sums, batches = defaultdict(float), 0
            for index in batch_indices(len(train_questions), cfg.batch_size, shuffle=True, generator=rng):
                inputs = TrainingInputs(
                    sampler.choices(index, rng), supervised[index] if cfg.grounding_supervision > 0 else None
                )
                rank_slice = local_batch(index, inputs, ctx)  # this process's slice of the global batch
                if rank_slice is None:  # fewer questions than processes: skipped on every rank
                    continue
                batch = make_batch(bank, train_questions, *rank_slice).to(device)
                losses = compute_losses(
                    trainer(batch),
                    batch,
                    qa_weight=cfg.qa_weight,
                    question_discrimination_weight=cfg.question_discrimination_weight,
                    cma_weight=params.cma.weight,
                    grounding_weight=cfg.grounding_supervision_weight if cfg.grounding_supervision > 0 else 0.0,
                )
                optimizer.zero_grad(set_to_none=True)
                scale = loss_scale(len(rank_slice[0]), len(index), ctx)  # 1 with one process
                (losses["total"] * scale).backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                for name, value in losses.items():
                    sums[name] += scale / ctx.world_size * float(value.detach())
                batches += 1
            sums = reduce_sums(sums, ctx)  # over the processes
            for name, total in sums.items():
                live.log_metric(f"train/loss/{name}", total / max(1, batches))
            live.log_metric("train/lr", optimizer.param_groups[0]["lr"])
            if model.gsg is not None and params.gsg.smoothing:
                live.log_metric("train/gsg_sigma", float(model.gsg.sigma.detach()))
            summary = f"epoch {epoch}: loss {sums['total'] / max(1, batches):.4f}"
            if val_questions is not None:
                result = score_split(
                    val_questions,
                    predict_sharded(model, bank, val_questions, params.eval.batch_size, ctx),
                    [cfg.select_rule],
                )
                live.log_metric("val/acc_qa", result["acc_qa"])
                for metric, value in result["rules"].get(cfg.select_rule, {}).get("overall", {}).items():
                    if metric != "acc_qa":
                        live.log_metric(f"val/{cfg.select_rule}/{metric}", value)
                name, value = selection_value(result, cfg)
                summary += f", val {name} {value:.2f}"
            else:
                name, value = "epoch", float(epoch)
            improved = value > best_value
            live.log_metric("val/selected", float(improved))
            log.info(summary + (" (best so far)" if improved else ""))
            if improved:
                best_value = value
                best_state = {
                    "epoch": epoch,
                    "selected_by": name,
                    "selection_value": value,
                    "variant": params.model.variant,
                    "provenance": bank.provenance(),
                    "params": {k: to_dict(getattr(params, k)) for k in ("model", "gsg", "cma", "eci", "train")},
                    "skipped_questions": train_questions.skipped_without_video,
                }
                if ctx.is_main:
                    save_checkpoint(params.paths.checkpoint, model, best_state)
            live.next_step()
            resume.save(epoch, model, optimizer, scheduler, rng, best_value, best_state, live.step)
        if best_state is not None:
            # The DVC metrics (dvclive/metrics.json): the kept epoch and its validation numbers, not the last
            # epoch's losses (the whole history is in the curves).
            if ctx.is_main:
                live.summary = kept_epoch_summary(read_history(params.paths.train_log), best_state["epoch"])
    if ctx.is_main:
        training_curves(read_history(params.paths.train_log), Path(params.paths.plots) / TRAINING_CURVES)
    resume.finish()
    log.info(
        "best epoch %d (%s %.2f); checkpoint in %s",
        best_state["epoch"],
        best_state["selected_by"],
        best_value,
        params.paths.checkpoint,
    )
