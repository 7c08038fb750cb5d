"""What the official metrics do not say: intervals over videos, where the frame weights go, and shortcuts.

Shape notation: N questions, T frames, V videos, R bootstrap resamples.

- `video_bootstrap`: 95 % intervals of per-question means by resampling *videos* with replacement
  (the questions of one video share its frames and are not independent; resampling questions would
  give intervals that are too narrow). A video drawn twice counts twice.
- `attention_mass`: the weight on ground-truth frames relative to their share of the video:
  sum_{t in GT} w_t / (|GT| / T). 1.0 = no grounding (uniform weights, or weights that ignore the
  evidence), T / |GT| = all weight on the evidence.
- `normalized_entropy`: H(w) / log T of each question's weights: 1.0 = flat (nothing grounded).
- `shortcut_share`: the fraction of predictions whose option has the answer kind paired with a planted
  nuisance (synthetic benchmark). A model that answers from the evidence matches it 1/5 of the time on
  test_ood (where the nuisance is independent of the answer); one that follows the nuisance, always.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.evaluation.scoring import GQA_IOP_THRESHOLD, best_overlap

BOOTSTRAP_LEVEL = 0.95


def video_bootstrap(
    values: Mapping[str, np.ndarray],
    video_ids: Sequence[str],
    resamples: int = 1000,
    seed: int = 0,
    level: float = BOOTSTRAP_LEVEL,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals `{name: (low, high)}` of the mean of each per-question array in `values`.

    Every array is (N,) over the same questions as `video_ids`; NaN entries (e.g. a question without a
    labelled frame) are left out of that metric's means. The same resampled videos serve every metric.
    """
    videos, inverse = np.unique(np.asarray(video_ids), return_inverse=True)  # (V,), (N,)
    V = len(videos)
    rng = np.random.default_rng(seed)
    # counts[r, v]: how many times resample r drew video v (each resample draws V videos).
    counts = rng.multinomial(V, np.full(V, 1.0 / V), size=resamples).astype(np.float64)  # (R, V)
    tail = (1.0 - level) / 2.0
    intervals = {}
    for name, array in values.items():
        array = np.asarray(array, dtype=np.float64)
        if array.shape != (len(inverse),):
            raise ValueError(f"{name}: expected {len(inverse)} values, got shape {array.shape}")
        present = ~np.isnan(array)
        sums = np.bincount(inverse[present], weights=array[present], minlength=V)  # (V,)
        sizes = np.bincount(inverse[present], minlength=V).astype(np.float64)  # (V,)
        totals = counts @ sizes  # (R,)
        means = np.divide(counts @ sums, totals, out=np.full(resamples, np.nan), where=totals > 0)
        means = means[~np.isnan(means)]
        if len(means) == 0:
            intervals[name] = (float("nan"), float("nan"))
            continue
        low, high = np.quantile(means, [tail, 1.0 - tail])
        intervals[name] = (float(low), float(high))
    return intervals


def attention_mass(weights: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(N,) weight on the labelled frames / their share of the (real) frames; NaN without a labelled frame.

    weights (N, T) rows summing to 1 over real frames; labels (N, T) in {0, 1}; mask (N, T) real frames.
    """
    weights = np.asarray(weights, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    real = np.ones_like(weights) if mask is None else np.asarray(mask, dtype=np.float64)
    labels = labels * real
    share = labels.sum(axis=1) / real.sum(axis=1)  # (N,)
    on_evidence = (weights * labels).sum(axis=1)  # (N,)
    return np.divide(on_evidence, share, out=np.full(len(share), np.nan), where=share > 0)


def normalized_entropy(weights: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(N,) entropy of each row of `weights` (N, T) over its real frames, divided by log(#real frames)."""
    weights = np.asarray(weights, dtype=np.float64)
    real = np.ones_like(weights, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    safe = np.where(real & (weights > 0), weights, 1.0)
    entropy = -(np.where(real, weights, 0.0) * np.log(safe)).sum(axis=1)
    frames = real.sum(axis=1)
    return np.divide(entropy, np.log(frames), out=np.zeros(len(frames)), where=frames > 1)


def shortcut_share(predicted_kinds: Sequence[str], nuisance_kinds: Sequence[str]) -> float:
    """Fraction of questions whose predicted option's kind is the kind paired with the nuisance."""
    if len(predicted_kinds) != len(nuisance_kinds):
        raise ValueError(f"{len(predicted_kinds)} predictions but {len(nuisance_kinds)} nuisance values")
    if not len(predicted_kinds):
        return float("nan")
    return float(np.mean([p == n for p, n in zip(predicted_kinds, nuisance_kinds, strict=True)]))


def per_question_scores(
    correct: np.ndarray, spans: np.ndarray, segments: Sequence[Sequence[Sequence[float]]]
) -> dict[str, np.ndarray]:
    """(N,) arrays whose means are the official metrics of one rule (in percent): NaN for unlabelled questions.

    correct (N,) bool; spans (N, 2) seconds; segments: each question's labelled [start, end] lists.
    """
    labelled = np.array([bool(s) for s in segments])
    iou = np.full(len(spans), np.nan)
    iop = np.full(len(spans), np.nan)
    for i in np.flatnonzero(labelled):
        iou[i], iop[i] = best_overlap(spans[i], segments[i])
    values = {
        "acc_gqa": np.where(labelled, 100.0 * (correct & (np.nan_to_num(iop) >= GQA_IOP_THRESHOLD)), np.nan),
        "miop": 100.0 * iop,
        "miou": 100.0 * iou,
    }
    for name, array in (("iop", iop), ("iou", iou)):
        for threshold in (0.3, 0.5):
            values[f"{name}@{threshold}"] = np.where(labelled, 100.0 * (np.nan_to_num(array) >= threshold), np.nan)
    return values


def diagnose_split(
    video_ids: Sequence[str],
    correct: np.ndarray,
    rule_spans: Mapping[str, np.ndarray],
    segments: Sequence[Sequence[Sequence[float]]],
    weights: np.ndarray,
    frame_labels: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, object]:
    """Video-bootstrap intervals of Acc@QA and of every rule's metrics, attention mass and entropy.

    Returns `{"ci95": {"acc_qa": {"low", "high"}, rule: {metric: {"low", "high"}}}, "attention_mass": m,
    "attention_mass_ci95": {...}, "frame_entropy": h}`; grounding entries only for labelled questions.
    """
    correct = np.asarray(correct, dtype=bool)
    values: dict[str, np.ndarray] = {"acc_qa": 100.0 * correct}
    labelled = any(bool(s) for s in segments)
    if labelled:
        for rule, spans in rule_spans.items():
            for metric, array in per_question_scores(correct, np.asarray(spans), segments).items():
                values[f"{rule}/{metric}"] = array
        values["attention_mass"] = attention_mass(weights, frame_labels)
    intervals = video_bootstrap(values, video_ids, resamples=resamples, seed=seed)
    ci: dict[str, object] = {}
    for name, (low, high) in intervals.items():
        node = ci
        *parents, leaf = name.split("/")
        for parent in parents:
            node = node.setdefault(parent, {})  # type: ignore[assignment]
        node[leaf] = {"low": round(low, 4), "high": round(high, 4)}  # type: ignore[index]
    result: dict[str, object] = {"ci95": ci, "frame_entropy": round(float(np.mean(normalized_entropy(weights))), 4)}
    if labelled:
        mass = values["attention_mass"]
        result["attention_mass"] = round(float(np.nanmean(mass)), 4) if np.isfinite(mass).any() else None
    return result
