"""Grounding rules on hand-made weight curves, and against line-by-line transcriptions of the reference code."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.grounding import (
    ground,
    is_span,
    merge_spans,
    merged_span,
    posthoc_frames,
    posthoc_span,
    prehoc_frames,
    prehoc_span,
    reference_spans,
)

T = 32
SECONDS = np.arange(T, dtype=np.float64)  # one frame per second: dt is the distance in frames


def curve(values: dict[int, float], base: float = 0.0, num_frames: int = T) -> np.ndarray:
    weights = np.full(num_frames, base)
    for frame, value in values.items():
        weights[frame] = value
    return weights


# ---------------------------------------------------------------------------------------------
# Oracles: the reference loops transcribed as written (while loops, exclusive window end), to
# compare the implementation with on many random curves.


def reference_find_seg_ada(vatt, cur):
    """NExT-GQA `find_seg_ada` (code/TempGQA/tools/getspan.py), thd 0.3, dis 10."""
    vatt = np.asarray(vatt, dtype=np.float64)
    vatt = (vatt - np.min(vatt)) / (np.max(vatt) - np.min(vatt) + 1e-12)
    n, max_id, mean_s = len(vatt), np.argmax(vatt), np.mean(vatt)
    path, stamp_s, thd, dis = [max_id], cur[max_id], np.mean(vatt) + 0.3 * mean_s, 10
    i = 1
    while max_id - i > 0:
        elapse = abs(stamp_s - cur[max_id - i])
        if vatt[max_id - i] / (1 + elapse / dis) >= thd:
            path.append(max_id - i)
        elif elapse > dis:
            break
        i += 1
    i = 1
    while max_id + i < n:
        elapse = abs(stamp_s - cur[max_id + i])
        if vatt[max_id + i] / (1 + elapse / dis) >= thd:
            path.append(max_id + i)
        elif elapse > dis:
            break
        i += 1
    return cur[min(path)], cur[max(path)]


def reference_best_interval(prob, window_sizes=(1, 3, 5)):
    """CRA `GroundingModule.find_best_interval_v2` for one curve: `[start, start + size]`."""
    length = len(prob)
    best, indices = -np.inf, [0, 0]
    max_position = int(np.argmax(prob))
    for size in window_sizes:
        if size > length // 2:
            continue
        for start in range(length - size + 1):
            score = prob[start : start + size].sum() if start <= max_position < start + size else -np.inf
            if score > best:
                best, indices = score, [start, start + size]
    return indices


# ---------------------------------------------------------------------------------------------
# Pre-hoc


def test_prehoc_takes_heaviest_five_frame_window_around_the_peak_with_the_reference_end_frame():
    weights = curve({8: 0.1, 9: 0.2, 10: 1.0, 11: 0.5, 12: 0.3}, base=0.01)
    # Window totals of starts 6..10: 1.32, 1.81, 2.10, 2.01, 1.82.
    assert prehoc_frames(weights) == (8, 13)
    timestamps = 1.0 + 0.5 * np.arange(T)
    assert prehoc_span(weights, timestamps) == (5.0, 7.5)


def test_prehoc_equal_totals_keep_the_first_window():
    weights = curve({9: 0.5, 10: 1.0, 11: 0.5}, base=0.25)  # 5-frame starts 7, 8, 9 all total 2.5
    assert prehoc_frames(weights) == (7, 12)
    # Only a strictly larger total replaces the best, across sizes too: with zeros around the bump
    # the 5-frame windows merely tie with the 3-frame window at 9..11.
    assert prehoc_frames(curve({9: 0.5, 10: 1.0, 11: 0.5})) == (9, 12)


def test_prehoc_plateau_starts_at_its_first_frame():
    weights = curve({frame: 1.0 for frame in range(5, 10)})
    assert prehoc_frames(weights) == (5, 10)


def test_prehoc_peak_at_either_end_of_the_video():
    assert prehoc_frames(curve({0: 1.0, 1: 0.5, 2: 0.4, 3: 0.3, 4: 0.2})) == (0, 5)
    # The only 5-frame window holding frame 31 starts at 27; its end index 32 is clipped to 31.
    assert prehoc_frames(curve({31: 1.0, 30: 0.5, 29: 0.4, 28: 0.3, 27: 0.2})) == (27, 31)


def test_prehoc_windows_longer_than_half_the_frames_are_skipped():
    weights = np.array([0.0, 0.0, 0.2, 1.0, 0.5, 0.0, 0.0, 0.0])  # T = 8: sizes 1 and 3 only
    assert prehoc_frames(weights) == (2, 5)
    assert prehoc_frames(np.array([0.1, 0.9, 0.3, 0.2])) == (1, 2)  # T = 4: size 1 only
    assert prehoc_frames(np.array([0.7])) == (0, 0)  # no window fits: the peak frame


def test_prehoc_negative_weights_can_prefer_a_single_frame():
    weights = curve({6: 0.5}, base=-1.0, num_frames=12)  # totals: size 1 0.5, size 3 -1.5, size 5 -3.5
    assert prehoc_frames(weights) == (6, 7)


def test_prehoc_matches_the_reference_on_random_curves():
    rng = np.random.default_rng(0)
    for trial in range(300):
        num_frames = int(rng.integers(1, 40))
        logits = rng.normal(size=num_frames) * rng.uniform(0.1, 5.0)
        weights = np.exp(logits) / np.exp(logits).sum()
        if trial % 3 == 0:
            weights = np.round(weights, 2)  # ties
        start, end = reference_best_interval(weights)
        assert prehoc_frames(weights) == (start, min(end, num_frames - 1))


# ---------------------------------------------------------------------------------------------
# Post-hoc


def test_posthoc_single_peak_keeps_the_frames_above_the_decayed_threshold():
    weights = curve({13: 0.5, 14: 0.9, 15: 1.0, 16: 0.8})
    # mean 0.1, threshold 0.13; 0.5 / (1 + 2/10) = 0.42 passes, zeros fail.
    assert posthoc_frames(weights, SECONDS) == (13, 16)
    assert posthoc_span(weights, SECONDS + 0.5) == (13.5, 16.5)


def test_posthoc_skips_near_failures_but_stops_after_ten_seconds():
    # Frame 20 (dt 5 s) passes after four failing frames; frame 28 would pass (0.95 / 2.3 = 0.41 >
    # threshold 0.12) but frame 26 fails at dt 11 s first and ends the forward walk.
    weights = curve({15: 1.0, 20: 0.9, 28: 0.95})
    assert posthoc_frames(weights, SECONDS) == (15, 20)


def test_posthoc_keeps_passing_frames_beyond_ten_seconds():
    weights = curve({2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0, 6: 1.0, 7: 1.0, 8: 1.0, 12: 1.0})
    timestamps = 2.0 * np.arange(T)
    # threshold 1.3 * 8/32 = 0.325: frame 8 (dt 12 s) scores 1/2.2 = 0.45 and is kept; frame 9 fails
    # at dt 14 s and stops the walk, so frame 12 (1/3 = 0.33) is never reached.
    assert posthoc_span(weights, timestamps) == (4.0, 16.0)


def test_posthoc_plateau_peak_is_its_first_frame():
    weights = curve({frame: 1.0 for frame in range(5, 26)})
    # threshold 1.3 * 21/32 = 0.853: only dt <= 1.7 s passes.
    assert posthoc_frames(weights, SECONDS) == (5, 6)


def test_posthoc_peak_at_frame_zero_walks_forward_only():
    assert posthoc_frames(curve({0: 1.0, 1: 0.6}), SECONDS) == (0, 1)


def test_posthoc_backward_walk_never_reaches_frame_zero():
    # Frame 0 would pass (0.99 / 1.1 = 0.9), but the official loop runs while max_id - i > 0.
    assert posthoc_frames(curve({0: 0.99, 1: 1.0}), SECONDS) == (1, 1)
    assert posthoc_frames(curve({0: 0.99, 2: 1.0}), SECONDS) == (2, 2)
    assert posthoc_frames(curve({0: 0.99, 1: 0.9, 2: 1.0}), SECONDS) == (1, 2)


def test_posthoc_peak_at_the_last_frame_walks_backward():
    weights = curve({25: 0.6, 30: 0.7, 31: 1.0})
    assert posthoc_frames(weights, SECONDS) == (25, 31)


def test_posthoc_flat_curve_keeps_every_frame_after_the_first():
    # Normalised to zeros: threshold 0, every score 0 >= 0; peak is frame 0, the walk goes forward.
    assert posthoc_frames(np.full(T, 0.3), SECONDS) == (0, T - 1)


def test_posthoc_matches_the_reference_on_real_timestamps(nextgqa_dir):
    frame2time = json.loads((nextgqa_dir / "frame2time_val.json").read_text())
    rng = np.random.default_rng(1)
    for video_id in list(frame2time)[:150]:
        timestamps = np.asarray(frame2time[video_id])
        for shape in (0.3, 3.0):
            logits = rng.normal(size=T) * shape
            weights = np.exp(logits) / np.exp(logits).sum()
            assert posthoc_span(weights, timestamps) == reference_find_seg_ada(weights, timestamps)


# ---------------------------------------------------------------------------------------------
# Merge, batches, inputs


def test_two_separated_bumps_ground_on_the_higher_one():
    weights = curve({4: 0.25, 5: 0.5, 6: 1.0, 7: 0.5, 8: 0.25, 24: 0.25, 25: 0.75, 26: 0.25})
    assert prehoc_frames(weights) == (4, 9)  # 5-frame totals of starts 2..6: 1.75, 2.25, 2.5, 2.25, 1.75
    # threshold 1.3 * 3.75/32 = 0.15: frames 4 and 8 score 0.25 / 1.2 = 0.21; the walk stops at dt 11 s.
    assert posthoc_frames(weights, SECONDS) == (4, 8)
    assert merged_span(weights, SECONDS) == (4.0, 8.0)


def test_merge_is_the_intersection_or_else_the_posthoc_span():
    assert merge_spans((2.0, 8.0), (5.0, 12.0)) == (5.0, 8.0)
    assert merge_spans((2.0, 8.0), (3.0, 4.0)) == (3.0, 4.0)
    assert merge_spans((0.0, 5.0), (5.0, 9.0)) == (5.0, 5.0)  # touching: zero-length
    assert merge_spans((0.0, 2.0), (5.0, 9.0)) == (5.0, 9.0)
    assert merge_spans((10.0, 12.0), (5.0, 9.0)) == (5.0, 9.0)
    with pytest.raises(ValueError, match="not a span"):
        merge_spans((8.0, 2.0), (5.0, 9.0))


@pytest.mark.parametrize(
    "value, expected",
    [
        ([1.0, 2.0], True),
        ((3, 3), True),  # zero-length
        (np.array([0.5, 7.0]), True),
        ([2.0, 1.0], False),  # reversed
        ([1.0], False),
        ([1.0, 2.0, 3.0], False),
        ([0.0, float("inf")], False),
        ([0.0, float("nan")], False),
        ([True, 2.0], False),
        (["1", "2"], False),
        ("12", False),
        (None, False),
    ],
)
def test_is_span(value, expected):
    assert is_span(value) is expected


def test_merged_falls_back_to_posthoc_when_the_rules_disagree():
    prehoc_weights = curve({3: 1.0, 4: 0.5})
    posthoc_weights = curve({25: 1.0, 26: 0.8})
    assert prehoc_span(prehoc_weights, SECONDS) == (2.0, 5.0)  # window 2..4, reference end frame 5
    assert merged_span(prehoc_weights, SECONDS, posthoc_weights) == (25.0, 26.0)


def test_ground_batches_rows_through_the_single_curve_rules():
    rng = np.random.default_rng(2)
    weights = rng.random((4, T))
    posthoc_weights = rng.random((4, T))
    timestamps = np.sort(rng.uniform(0, 60, size=(4, T)), axis=1)
    for row in range(4):
        expected_pre = prehoc_span(weights[row], timestamps[row])
        expected_post = posthoc_span(posthoc_weights[row], timestamps[row])
        assert tuple(ground(weights, timestamps, "prehoc")[row]) == expected_pre
        assert tuple(ground(weights, timestamps, "posthoc", posthoc_weights)[row]) == expected_post
        assert tuple(ground(weights, timestamps, "merged", posthoc_weights)[row]) == merge_spans(
            expected_pre, expected_post
        )
    shared = ground(weights, SECONDS, "posthoc")
    assert shared.shape == (4, 2)
    assert tuple(shared[1]) == posthoc_span(weights[1], SECONDS)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown grounding rule"):
        ground(np.ones((1, T)), SECONDS, "average")
    with pytest.raises(ValueError, match="finite"):
        posthoc_span(curve({3: np.nan}), SECONDS)
    with pytest.raises(ValueError, match="ascending"):
        prehoc_span(curve({3: 1.0}), SECONDS[::-1])
    with pytest.raises(ValueError, match="shape"):
        posthoc_span(curve({3: 1.0}), SECONDS[:-1])


# ---------------------------------------------------------------------------------------------
# Reference spans


def test_whole_and_center_reference_spans():
    durations = np.array([40.0, 10.0])
    np.testing.assert_array_equal(reference_spans(durations, "whole"), [[0.0, 40.0], [0.0, 10.0]])
    np.testing.assert_array_equal(reference_spans(durations, "center"), [[10.0, 30.0], [2.5, 7.5]])


def test_random_reference_spans_are_seeded_ordered_and_inside_the_video():
    durations = np.linspace(5.0, 120.0, 2000)
    spans = reference_spans(durations, "random", seed=3)
    np.testing.assert_array_equal(spans, reference_spans(durations, "random", seed=3))
    assert not np.array_equal(spans, reference_spans(durations, "random", seed=4))
    assert (spans[:, 0] >= 0).all() and (spans[:, 0] <= spans[:, 1]).all() and (spans[:, 1] <= durations).all()
    # Order statistics of two uniforms: mean length a third of the video.
    assert np.mean((spans[:, 1] - spans[:, 0]) / durations) == pytest.approx(1 / 3, abs=0.02)
    with pytest.raises(ValueError, match="unknown reference span"):
        reference_spans(durations, "left")
