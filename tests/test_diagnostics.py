"""Diagnostics of `evaluate` (pipeline/evaluation/diagnostics.py): golden values on hand-made inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.evaluation.diagnostics import (
    attention_mass,
    diagnose_split,
    normalized_entropy,
    per_question_scores,
    shortcut_share,
    video_bootstrap,
)


def test_attention_mass_golden_values():
    labels = np.array([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=float)
    weights = np.array([[0.0, 0.5, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]])
    # Row 0: all weight on 2 of 4 frames -> 1.0 / 0.5 = 2; row 1: uniform -> 1; row 2: no label -> NaN.
    mass = attention_mass(weights, labels)
    assert mass[:2].tolist() == [2.0, 1.0] and math.isnan(mass[2])
    # Padded frames do not count in the share: 1 labelled of 2 real frames, weight 0.9 on it -> 1.8.
    mask = np.array([[1, 1, 0, 0]], dtype=bool)
    assert attention_mass(np.array([[0.9, 0.1, 0.0, 0.0]]), np.array([[1, 0, 1, 0]]), mask)[0] == pytest.approx(1.8)


def test_normalized_entropy_golden_values():
    flat = np.full((1, 8), 1 / 8)
    peaked = np.array([[1.0, 0, 0, 0, 0, 0, 0, 0]])
    half = np.array([[0.5, 0.5, 0, 0]])
    assert normalized_entropy(flat)[0] == pytest.approx(1.0)
    assert normalized_entropy(peaked)[0] == pytest.approx(0.0)
    assert normalized_entropy(half)[0] == pytest.approx(math.log(2) / math.log(4))
    # Over the real frames only: two real frames, flat over them -> 1.
    assert normalized_entropy(half, np.array([[1, 1, 0, 0]], dtype=bool))[0] == pytest.approx(1.0)


def test_video_bootstrap_resamples_videos_not_questions():
    # Video a: 3 questions all right; video b: 1 question wrong. Resampling videos, each resample is
    # {a, a}, {a, b} or {b, b}: means 100, 75 (3 of 4 questions), 0 with probabilities 1/4, 1/2, 1/4.
    values = {"acc": np.array([100.0, 100.0, 100.0, 0.0])}
    videos = ["a", "a", "a", "b"]
    low, high = video_bootstrap(values, videos, resamples=4000, seed=1)["acc"]
    assert (low, high) == (0.0, 100.0)
    draws = video_bootstrap(values, videos, resamples=4000, seed=1, level=0.4)["acc"]
    assert draws == (75.0, 75.0)  # the central 40 % of the draws all sit at 75
    # Question resampling would never give 0 or 100 this often; videos with one question each equal it.
    single = video_bootstrap({"acc": np.array([100.0, 0.0])}, ["a", "b"], resamples=2000, seed=0)["acc"]
    assert single == (0.0, 100.0)


def test_video_bootstrap_ignores_nan_and_rejects_misaligned_input():
    values = {"miop": np.array([50.0, np.nan, 50.0])}
    assert video_bootstrap(values, ["a", "b", "c"], resamples=200)["miop"] == (50.0, 50.0)
    with pytest.raises(ValueError, match="expected 3 values"):
        video_bootstrap({"x": np.zeros(2)}, ["a", "b", "c"])


def test_per_question_scores_follow_the_official_rules():
    correct = np.array([True, True, False, True])
    spans = np.array([[0.0, 2.0], [5.0, 5.0], [0.0, 1.0], [0.0, 1.0]])
    segments = [[[0.0, 1.0]], [[4.0, 6.0]], [[0.0, 1.0]], []]
    scores = per_question_scores(correct, spans, segments)
    assert scores["miop"][:3].tolist() == [50.0, 100.0, 100.0]  # a zero-length span inside: IoP 1
    assert scores["miou"][:3].tolist() == [50.0, 0.0, 100.0]
    assert scores["acc_gqa"][:3].tolist() == [100.0, 100.0, 0.0]  # right AND IoP >= 0.5
    assert all(math.isnan(scores[name][3]) for name in scores)  # no label: not scored


def test_diagnose_split_brackets_the_point_estimates():
    rng = np.random.default_rng(0)
    n, T = 60, 8
    videos = [f"v{i // 6}" for i in range(n)]
    correct = rng.random(n) < 0.6
    labels = np.zeros((n, T))
    labels[:, 2:4] = 1
    weights = rng.dirichlet(np.ones(T), size=n)
    spans = {"posthoc": np.tile([1.0, 3.0], (n, 1))}
    segments = [[[2.0, 4.0]]] * n
    result = diagnose_split(videos, correct, spans, segments, weights, labels, resamples=500)
    ci = result["ci95"]
    assert ci["acc_qa"]["low"] <= 100 * correct.mean() <= ci["acc_qa"]["high"]
    assert result["attention_mass"] == pytest.approx(np.mean((weights * labels).sum(1) / 0.25), abs=1e-4)
    assert 0 < result["frame_entropy"] < 1 and "posthoc" in ci and "attention_mass" in ci


def test_shortcut_share():
    assert shortcut_share(["grow", "glow", "split"], ["grow", "split", "split"]) == pytest.approx(2 / 3)
    assert math.isnan(shortcut_share([], []))
    with pytest.raises(ValueError, match="nuisance values"):
        shortcut_share(["grow"], [])
