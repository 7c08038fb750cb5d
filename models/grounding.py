"""Grounding rules: per-frame weights -> one time span in seconds, plus trivial reference spans.

Shape notation: N questions, T frames. A weight curve is `(T,)` floats, its frame timestamps `(T,)`
seconds in ascending order; a span is `(start_s, end_s)`.

Which frames each rule keeps follows the reference code (quirks included, checked in
tests/test_grounding.py against transcriptions of the reference loops); how frames become seconds
does not everywhere:

- pre-hoc (CRA's window around the peak): the frame choice of `GroundingModule.find_best_interval_v2`
  in WissingChen/CRA-GQA `modules/m_cra/grounding.py`. Departures: the reference turns frame indices
  into `index / 31` and its scorer into `round(index / 31 * duration, 1)` seconds (32 frames assumed
  to span the whole video); we take the sampled frames' own timestamps, unrounded, for any T. Its end
  index can be T (past the last frame); we clip it to the last frame.
- post-hoc (NExT-GQA's adaptive rule): `find_seg_ada` in doc-doc/NExT-GQA,
  `code/TempGQA/tools/getspan.py` (TempCLIP / FrozenGQA), identical in CRA-GQA's
  `utils/stat/metrics.py` (`Metric.find_seg_ada`, thd_weight=0.3, dis=10); seconds from the frame
  timestamps, as there.
- merged: `combine(..., way='itsc')` in NExT-GQA's `eval_ground.py` (also CRA-GQA's `Metric.combine`),
  applied to our pre-hoc span in seconds (the reference intersects its rounded `index / 31 * duration`).

Which weights feed which rule is the caller's choice (`ground_rules(..., posthoc_weights=...)`).
Pure numpy; no torch, so the scorer and the evaluate stage share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

Rule = Literal["prehoc", "posthoc", "merged"]
Reference = Literal["whole", "center", "random"]

RULES: tuple[str, ...] = ("prehoc", "posthoc", "merged")
REFERENCES: tuple[str, ...] = ("whole", "center", "random")

# CRA's candidate window lengths (frames); a window longer than T // 2 frames is never considered.
PREHOC_WINDOW_SIZES: tuple[int, ...] = (1, 3, 5)
# NExT-GQA post-hoc: keep a frame while weight / (1 + dt / DECAY_S) >= (1 + RATIO) * mean weight.
POSTHOC_THRESHOLD_RATIO = 0.3
POSTHOC_DECAY_S = 10.0
# The official min-max normalisation adds this to the range, so a flat curve does not divide by zero.
_NORMALISE_EPS = 1e-12


def is_span(value: Any) -> bool:
    """Whether `value` is a span: two finite numbers (not booleans) `[start_s, end_s]` with start_s <= end_s.

    The one span check of the project: the scorer applies it to label and result files.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)) or len(value) != 2:
        return False
    numbers = all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)
        for v in value
    )
    return bool(numbers and value[0] <= value[1])


def _check_curve(weights: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weights = np.asarray(weights, dtype=np.float64)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(f"weights must be a non-empty (T,) array, got shape {weights.shape}")
    if timestamps.shape != weights.shape:
        raise ValueError(f"timestamps shape {timestamps.shape} differs from weights shape {weights.shape}")
    if not (np.isfinite(weights).all() and np.isfinite(timestamps).all()):
        raise ValueError("weights and timestamps must be finite")
    if np.any(np.diff(timestamps) < 0):
        raise ValueError("timestamps must be in ascending order")
    return weights, timestamps


def prehoc_frames(weights: np.ndarray) -> tuple[int, int]:
    """First and last frame (inclusive) of CRA's pre-hoc window on a `(T,)` weight curve.

    Every window of 1, 3 or 5 consecutive frames that contains the peak frame (first index on ties,
    as argmax) is scored by its *total* weight; the first best in the order (size 1, 3, 5; start
    ascending) is kept, a strictly larger total replacing it. Windows longer than T // 2 frames are
    skipped. No average or threshold is involved: with non-negative weights the widest allowed window
    always wins, and the size matters only when T < 10 or weights are negative. This is the choice
    `find_best_interval_v2` makes.

    As there, the window is reported as `start .. start + size`: the reference's exclusive end index
    is used inclusively (its keyframe mask and its time `(start + size) / 31` both do). Departures:
    the end is clipped to the last frame (the reference can report frame T), and with T < 2, where no
    window fits, we ground on the peak frame (the reference falls back to frame 0).
    """
    weights = np.asarray(weights, dtype=np.float64)
    num_frames = weights.shape[0]
    peak = int(np.argmax(weights))
    best_total, best_start, best_size = -np.inf, peak, 0
    for size in PREHOC_WINDOW_SIZES:
        if size > num_frames // 2:
            continue
        for start in range(max(0, peak - size + 1), min(peak, num_frames - size) + 1):
            total = weights[start : start + size].sum()
            if total > best_total:
                best_total, best_start, best_size = total, start, size
    return best_start, min(best_start + best_size, num_frames - 1)


def prehoc_span(weights: np.ndarray, timestamps: np.ndarray) -> tuple[float, float]:
    """Timestamps of the first and last frame of `prehoc_frames` (the reference: `index / 31 * duration`)."""
    weights, timestamps = _check_curve(weights, timestamps)
    first, last = prehoc_frames(weights)
    return float(timestamps[first]), float(timestamps[last])


def posthoc_frames(
    weights: np.ndarray,
    timestamps: np.ndarray,
    threshold_ratio: float = POSTHOC_THRESHOLD_RATIO,
    decay_s: float = POSTHOC_DECAY_S,
) -> tuple[int, int]:
    """First and last frame (inclusive) NExT-GQA's adaptive post-hoc rule keeps.

    Min-max normalise the weights; start from the peak frame (first index on ties); walk each way,
    keeping a frame when weight / (1 + dt / decay_s) >= (1 + threshold_ratio) * mean, where dt is
    its distance in seconds to the peak. A failing frame ends that direction only once dt > decay_s;
    nearer failing frames are skipped and the walk goes on, so the kept frames may have gaps (the
    span covers them). As in the official loop (`while max_id - i > 0`), the backward walk stops at
    frame 1: frame 0 is never kept unless it is the peak itself. The forward walk reaches the last frame.
    """
    weights, timestamps = _check_curve(weights, timestamps)
    num_frames = weights.shape[0]
    normalised = (weights - weights.min()) / (weights.max() - weights.min() + _NORMALISE_EPS)
    peak = int(np.argmax(normalised))
    mean = normalised.mean()
    # Written as the official `mean_s + 0.3 * mean_s` so the comparison rounds identically.
    threshold = mean + threshold_ratio * mean
    first = last = peak
    for frames in (range(peak - 1, 0, -1), range(peak + 1, num_frames)):
        for frame in frames:
            elapsed = abs(timestamps[peak] - timestamps[frame])
            if normalised[frame] / (1 + elapsed / decay_s) >= threshold:
                first, last = min(first, frame), max(last, frame)
            elif elapsed > decay_s:
                break
    return first, last


def posthoc_span(
    weights: np.ndarray,
    timestamps: np.ndarray,
    threshold_ratio: float = POSTHOC_THRESHOLD_RATIO,
    decay_s: float = POSTHOC_DECAY_S,
) -> tuple[float, float]:
    """NExT-GQA's post-hoc span: timestamps of the first and last frame of `posthoc_frames`."""
    first, last = posthoc_frames(weights, timestamps, threshold_ratio, decay_s)
    return float(timestamps[first]), float(timestamps[last])


def merge_spans(prehoc: tuple[float, float], posthoc: tuple[float, float]) -> tuple[float, float]:
    """The intersection of the two spans; the post-hoc span when they do not overlap.

    Spans that only touch intersect in a zero-length span (the reference tests `start <= end`).
    """
    for span in (prehoc, posthoc):
        if not is_span(span):
            raise ValueError(f"not a span [start_s, end_s] with start_s <= end_s: {span!r}")
    start, end = max(prehoc[0], posthoc[0]), min(prehoc[1], posthoc[1])
    if start <= end:
        return float(start), float(end)
    return float(posthoc[0]), float(posthoc[1])


def merged_span(
    weights: np.ndarray, timestamps: np.ndarray, posthoc_weights: np.ndarray | None = None
) -> tuple[float, float]:
    """Merge of the pre-hoc span of `weights` and the post-hoc span of `posthoc_weights` (default `weights`)."""
    prehoc = prehoc_span(weights, timestamps)
    posthoc = posthoc_span(weights if posthoc_weights is None else posthoc_weights, timestamps)
    return merge_spans(prehoc, posthoc)


def ground_rules(
    weights: np.ndarray,
    timestamps: np.ndarray,
    rules: Sequence[str],
    posthoc_weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Spans of N questions by several rules: `{rule: (N, 2)}` seconds.

    weights `(N, T)`; timestamps `(N, T)` or shared `(T,)`. The pre-hoc rule reads `weights`; the
    post-hoc rule (alone or inside `merged`) reads `posthoc_weights` when given, else `weights`.
    Each question's pre-hoc and post-hoc spans are computed once, and `merged` combines them.
    """
    unknown = [rule for rule in rules if rule not in RULES]
    if unknown:
        raise ValueError(f"unknown grounding rule {unknown[0]!r}; expected one of {RULES}")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError(f"weights must be (N, T), got shape {weights.shape}")
    timestamps = np.broadcast_to(np.asarray(timestamps, dtype=np.float64), weights.shape)
    posthoc_weights = weights if posthoc_weights is None else np.asarray(posthoc_weights, dtype=np.float64)
    if posthoc_weights.shape != weights.shape:
        raise ValueError(f"posthoc_weights shape {posthoc_weights.shape} differs from weights shape {weights.shape}")
    base: dict[str, np.ndarray] = {}
    if {"prehoc", "merged"} & set(rules):
        base["prehoc"] = np.array([prehoc_span(w, t) for w, t in zip(weights, timestamps, strict=True)])
    if {"posthoc", "merged"} & set(rules):
        base["posthoc"] = np.array([posthoc_span(w, t) for w, t in zip(posthoc_weights, timestamps, strict=True)])
    if "merged" in rules:
        pairs = zip(base["prehoc"], base["posthoc"], strict=True)
        base["merged"] = np.array([merge_spans(tuple(pre), tuple(post)) for pre, post in pairs])
    return {rule: base[rule].reshape(-1, 2) for rule in rules}  # (N, 2) each, also for N = 0


def ground(
    weights: np.ndarray,
    timestamps: np.ndarray,
    rule: Rule,
    posthoc_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Spans of N questions by one rule: weights `(N, T)`, timestamps `(N, T)` or shared `(T,)` -> `(N, 2)`.

    See `ground_rules` for which weights each rule reads.
    """
    return ground_rules(weights, timestamps, (rule,), posthoc_weights)[rule]


def reference_spans(durations: np.ndarray, kind: Reference, seed: int = 0) -> np.ndarray:
    """Spans of trivial baselines that ignore the video: durations `(N,)` seconds -> `(N, 2)`.

    - whole: `[0, duration]` (IoP is then the fraction of the video the labels cover).
    - center: the centred half, `[duration / 4, 3 * duration / 4]`.
    - random: start and end are the order statistics of two independent uniform draws on
      `[0, duration]` (mean length duration / 3), from `numpy.random.default_rng(seed)`.
    """
    durations = np.asarray(durations, dtype=np.float64)
    if durations.ndim != 1:
        raise ValueError(f"durations must be (N,), got shape {durations.shape}")
    if not (np.isfinite(durations).all() and (durations >= 0).all()):
        raise ValueError("durations must be finite and >= 0")
    if kind == "whole":
        fractions = np.tile([0.0, 1.0], (durations.shape[0], 1))
    elif kind == "center":
        fractions = np.tile([0.25, 0.75], (durations.shape[0], 1))
    elif kind == "random":
        fractions = np.sort(np.random.default_rng(seed).uniform(0.0, 1.0, size=(durations.shape[0], 2)), axis=1)
    else:
        raise ValueError(f"unknown reference span {kind!r}; expected one of {REFERENCES}")
    return fractions * durations[:, None]  # (N, 2)
