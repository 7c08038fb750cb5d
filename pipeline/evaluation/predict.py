"""Run a model over a split and score it with NExT-GQA's metrics (used by `train` for validation and by `evaluate`).

Shape notation: N questions, A options, T frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.cra import CRA
from models.grounding import ground_rules, reference_spans
from pipeline.distributed import RankContext
from pipeline.evaluation.scoring import score
from pipeline.training.batches import FeatureBank, SplitQuestions, batch_indices, make_batch


@dataclass(frozen=True)
class SplitPredictions:
    option_scores: np.ndarray  # (N, A) logits
    predictions: np.ndarray  # (N,) chosen option
    frame_weights: np.ndarray  # (N, T) pooling and grounding weights (after Gaussian smoothing for CRA)
    frame_attention: np.ndarray  # (N, T) question-frame attention before smoothing (plots, `cra show`)
    timestamps: np.ndarray  # (N, T) seconds of the sampled frames


@torch.no_grad()
def predict(
    model: CRA, bank: FeatureBank, questions: SplitQuestions, batch_size: int, device: torch.device
) -> SplitPredictions:
    was_training = model.training
    model.eval()
    scores, weights, attention = [], [], []
    ground_truth = model.config.model.ground_truth_pooling
    for index in batch_indices(len(questions), batch_size, shuffle=False):
        output = model(make_batch(bank, questions, index, frame_labels=ground_truth).to(device))
        scores.append(output.option_logits.float().cpu().numpy())
        weights.append(output.frame_weights.float().cpu().numpy())
        attention.append(output.frame_attention.float().cpu().numpy())
    model.train(was_training)
    option_scores = np.concatenate(scores)
    return SplitPredictions(
        option_scores=option_scores,
        predictions=option_scores.argmax(axis=1),
        frame_weights=np.concatenate(weights),
        frame_attention=np.concatenate(attention),
        timestamps=np.asarray(bank.visual.timestamps[questions.video_rows], dtype=np.float64),
    )


def predict_sharded(
    model: torch.nn.Module, bank: FeatureBank, questions: SplitQuestions, batch_size: int, ctx: RankContext
) -> SplitPredictions:
    """`predict` over the whole split with several processes: each rank predicts a contiguous shard of the
    questions and every rank gets the whole split's predictions, in order (`predict` with one process)."""
    if ctx.world_size == 1 or len(questions) < ctx.world_size:
        return predict(model, bank, questions, batch_size, ctx.device)
    rows = np.array_split(np.arange(len(questions)), ctx.world_size)[ctx.rank]
    parts = ctx.all_gather(predict(model, bank, questions.subset(rows), batch_size, ctx.device))
    return SplitPredictions(
        **{
            field: np.concatenate([getattr(part, field) for part in parts])
            for field in SplitPredictions.__dataclass_fields__
        }
    )


def rule_spans(predictions: SplitPredictions, rules: Sequence[str]) -> dict[str, np.ndarray]:
    """`{rule: (N, 2)}` spans in seconds; each question's pre-hoc and post-hoc spans are computed once.

    Every rule reads `frame_weights`, the weights that pooled the frames: GSG-smoothed for CRA, as the
    official code feeds both its pre-hoc interval search and `find_seg_ada` (`fatt` is
    `time_param["key"]` in CRA-GQA's `modules/m_cra/refine.py`); the plain attention for TempCLIP.
    `weights.json` holds the same weights, so `cra score --weights` reproduces the post-hoc metrics.
    """
    return ground_rules(predictions.frame_weights, predictions.timestamps, rules)


def _durations(questions: SplitQuestions, predictions: SplitPredictions) -> np.ndarray:
    # Without an annotated duration, the last sampled frame bounds the video.
    return np.where(np.isnan(questions.durations), predictions.timestamps[:, -1], questions.durations)


def score_split(
    questions: SplitQuestions,
    predictions: SplitPredictions,
    rules: Sequence[str],
    references: Sequence[str] = (),
    seed: int = 0,
    spans: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metrics per grounding rule (and per trivial reference span), overall and per question type.

    `spans` are `{rule: (N, 2)}` from `rule_spans`, when already computed.
    Returns `{"n": ..., "acc_qa": ..., "rules": {rule: score(...)}, "references": {kind: score(...)}}`;
    without grounding labels in the split only `acc_qa` is filled.
    """
    keys = questions.keys
    correct = predictions.predictions == questions.answers
    result: dict[str, Any] = {"n": len(keys), "acc_qa": float(100.0 * correct.mean()), "rules": {}, "references": {}}
    if not questions.has_grounding_labels:
        return result
    gsub = questions.gsub()
    qa = {
        k: {"answer": int(a), "prediction": int(p)}
        for k, a, p in zip(keys, questions.answers, predictions.predictions, strict=True)
    }
    types = dict(zip(keys, questions.types, strict=True))
    # Grounding is a Python loop per question: reuse spans the caller already computed.
    spans = spans if spans is not None else rule_spans(predictions, rules)
    for rule in rules:
        result["rules"][rule] = score(gsub, dict(zip(keys, spans[rule].tolist(), strict=True)), qa=qa, types=types)
    durations = _durations(questions, predictions)
    for kind in references:
        spans = reference_spans(durations, kind, seed=seed)
        result["references"][kind] = score(gsub, dict(zip(keys, spans.tolist(), strict=True)), qa=qa, types=types)
    return result
