"""`train` as several processes: DistributedDataParallel under torchrun (`train.launch`).

Shape notation: B global batch (`train.batch_size`), b a rank's slice of it, N questions of a split.

Launch, as the extraction stages (`pipeline.distributed`): when `train.launch` asks for more than one
process, the stage re-runs itself under torchrun; each process joins the process group (`rank_context`:
nccl on CUDA, gloo on CPU) and takes the GPU of its local rank.

The same global batches as one process: every rank draws the permutation and the VQ question choices of
each global batch of B questions from the same seeded Generator, exactly as one process does (so the
Generator's stream, and the choices each question gets, are the single-process ones), then takes its
contiguous slice (`local_batch`, sizes differ by at most one). Each rank's loss is scaled by
b x world_size / B (`loss_scale`), so that DDP's average of the ranks' gradients is the gradient of the
global batch's mean loss for the per-question terms: the answer cross-entropy, and the VQ loss, whose
choices belong to each question. What changes with several processes (the single-process path is unchanged):
  - CMA's InfoNCE takes its negatives from the rank's slice (b questions, not B): an easier objective;
    the gradient is the size-weighted mean of the ranks' InfoNCE gradients. (Gathering the grounded videos
    of all ranks, as open_clip's `gather_with_grad`, would restore the global negatives; not done.)
  - grounding supervision (`train.grounding_supervision`, off by default) averages over each slice's
    labelled rows;
  - dropout masks come from each rank's own torch generator (seeded from (seed, rank));
  - a global batch of fewer questions than processes (only an epoch's last one can be) is skipped on every
    rank (one process trains on it);
  - sums run in another order (each rank sums its slice, the all-reduce sums the ranks): the weights
    differ from one process's by rounding, which training amplifies (README "Multi-GPU and multi-node"
    gives the tolerance and what it was measured on).
Metrics: the epoch's training losses are summed over ranks (one all-reduce per epoch); the validation
split is predicted in contiguous shards gathered on every rank (`pipeline.evaluation.predict.predict_sharded`),
so all ranks score the same predictions and agree on the best epoch. Only rank 0 writes the checkpoint,
dvclive's files (`NullLive` elsewhere) and the resume state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.distributed import RankContext
from pipeline.training.batches import TrainingInputs


def wrap_model(model: torch.nn.Module, ctx: RankContext) -> torch.nn.Module:
    """The module the training forward runs: `model` itself with one process, else its DDP wrapper.

    DDP broadcasts rank 0's parameters and buffers once, here; the buffers (frame statistics, confounder
    dictionaries) never change, so they are not re-broadcast at every forward."""
    if ctx.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def seed_dropout(seed: int, ctx: RankContext) -> None:
    """With several processes, give each rank its own torch generator (dropout), after the model is built
    (every rank builds the same initial weights from `seed`)."""
    if ctx.world_size > 1:
        torch.manual_seed(int(np.random.SeedSequence([seed, ctx.rank]).generate_state(1)[0]))


def local_batch(
    index: np.ndarray, inputs: TrainingInputs, ctx: RankContext
) -> tuple[np.ndarray, TrainingInputs] | None:
    """This rank's contiguous slice of a global batch: `index` (B,) -> (b,), and the same rows of `inputs`
    (the VQ choices (B, C) -> (b, C)). None when the batch has fewer questions than processes."""
    if ctx.world_size == 1:
        return index, inputs
    if len(index) < ctx.world_size:
        return None
    rows = np.array_split(np.arange(len(index)), ctx.world_size)[ctx.rank]
    supervised = None if inputs.supervise_grounding is None else inputs.supervise_grounding[rows]
    return index[rows], TrainingInputs(inputs.question_choices[rows], supervised)


def loss_scale(local_size: int, global_size: int, ctx: RankContext) -> float:
    """The factor on a rank's mean loss that makes DDP's gradient average the global batch's mean (1 alone)."""
    if ctx.world_size == 1:
        return 1.0
    return local_size * ctx.world_size / global_size


def reduce_sums(sums: dict[str, float], ctx: RankContext) -> dict[str, float]:
    """Per-name sums added over the ranks (every rank gets the totals); `sums` itself with one process."""
    if ctx.world_size == 1:
        return sums
    names = sorted(sums)
    ctx.require_same(names, "the training losses they log")
    totals = np.sum(np.array(ctx.all_gather([sums[name] for name in names]), dtype=np.float64), axis=0)
    return dict(zip(names, totals.tolist(), strict=True))


class NullLive:
    """What ranks other than 0 log to: nothing (the same calls as dvclive's `Live`)."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}
        self.step = 0

    def log_metric(self, name: str, value: Any, **_: Any) -> None:
        pass

    def next_step(self) -> None:
        self.step += 1

    def __enter__(self) -> NullLive:
        return self

    def __exit__(self, *_: Any) -> None:
        pass
