"""Training inputs (pipeline/training/batches.py) and the oracle visual-feature backend (stage side)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts.visual_features import read_visual_features
from pipeline.config import load_params
from pipeline.data.synthetic.oracle import ORACLE_DIM, oracle_features
from pipeline.data.synthetic.records import read_scripts
from pipeline.errors import PipelineError
from pipeline.training.batches import QuestionSampler, SplitQuestions, ground_truth_frames
from tests.conftest import REPO_ROOT


def questions(video_ids: list[str], question_rows: list[int]) -> SplitQuestions:
    n = len(video_ids)
    return SplitQuestions(
        split="train",
        qids=[str(i) for i in range(n)],
        video_ids=video_ids,
        types=["DO"] * n,
        answers=np.zeros(n, dtype=np.int64),
        segments=[[] for _ in range(n)],
        durations=np.full(n, 10.0),
        video_rows=np.zeros(n, dtype=np.int64),
        question_rows=np.asarray(question_rows, dtype=np.int64),
        option_rows=np.zeros((n, 5), dtype=np.int64),
        qa_rows=np.zeros((n, 5), dtype=np.int64),
        frame_labels=np.zeros((n, 4), dtype=np.float32),
        dropped={},
    )


def test_question_choices_put_the_true_question_first_and_never_repeat_its_text():
    # 20 videos x 6 questions; question texts repeat across videos (row = i % 12).
    video_ids = [f"v{i // 6}" for i in range(120)]
    rows = [i % 12 for i in range(120)]
    split = questions(video_ids, rows)
    sampler = QuestionSampler(split, negatives=4, same_video=0.3)
    index = np.arange(120)
    choices = sampler.choices(index, np.random.default_rng(0))
    assert choices.shape == (120, 5)
    assert (choices[:, 0] == np.asarray(rows)).all()
    assert all(choices[b, k] != choices[b, 0] for b in range(120) for k in range(1, 5))
    # Deterministic for a seed.
    assert (sampler.choices(index, np.random.default_rng(0)) == choices).all()


def test_the_same_video_share_of_negatives_is_what_was_asked():
    video_ids = [f"v{i // 6}" for i in range(600)]
    split = questions(video_ids, list(range(600)))  # distinct texts: row = question index
    for share in (0.0, 0.3, 1.0):
        choices = QuestionSampler(split, negatives=4, same_video=share).choices(
            np.arange(600), np.random.default_rng(1)
        )
        same = [video_ids[int(j)] == video_ids[b] for b in range(600) for j in choices[b, 1:]]
        assert np.mean(same) == pytest.approx(share, abs=0.03)


def test_ground_truth_frames_use_the_shown_frame_rule():
    timestamps = np.array([[0.5, 1.5, 2.5, 3.5], [0.5, 1.5, 2.5, 3.5]])
    labels = ground_truth_frames(timestamps, [[[1.5, 2.5]], [[0.0, 0.4], [3.0, 4.0]]])
    # Start inclusive, end exclusive; a segment between sampled frames marks none.
    assert labels.tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory) -> Path:
    """A generated and prepared tiny benchmark in a temporary folder; returns its params file."""
    root = tmp_path_factory.mktemp("oracle")
    params = (REPO_ROOT / "params.yaml").read_text().replace("preset: default", "preset: tiny")
    for key in ("data/synthetic", "data/prepared", "data/features", "data/confounders"):
        params = params.replace(f" {key}", f" {root / key}")
    path = root / "params.yaml"
    path.write_text(params)
    from stages import generate, prepare

    generate.run(load_params(path))
    prepare.run(load_params(path))
    return path


def test_the_oracle_backend_writes_the_scene_states_in_the_feature_schema(tiny_project: Path):
    from stages import visual_features

    params = load_params(tiny_project, ["features.visual.model=oracle"])
    visual_features.run(params)
    features = read_visual_features(params.paths.visual_features, expected=None)
    assert features.metadata["model"] == "oracle" and features.metadata["dim"] == ORACLE_DIM
    assert len(features.metadata["feature_names"]) == ORACLE_DIM
    assert features.features.shape[1:] == (params.decode.num_frames, ORACLE_DIM)
    # Row by row the scene states of the manifest's sampled frames.
    scripts = read_scripts(params.data.annotation_dir)
    requests = visual_features.load_video_requests(params.paths.video_manifest, params.decode.num_frames)
    for request, row in zip(requests, features.features, strict=True):
        np.testing.assert_array_equal(row, oracle_features(scripts[request.video_id], request.frame_indices))
    # It is checked against params like any feature file: another model name is refused.
    with pytest.raises(PipelineError, match="model"):
        from pipeline.artifacts.visual_features import expected_visual_metadata

        read_visual_features(params.paths.visual_features, expected_visual_metadata(load_params(tiny_project)))


def test_the_oracle_backend_needs_the_synthetic_benchmark(tiny_project: Path):
    from stages import visual_features

    params = load_params(tiny_project, ["features.visual.model=oracle"])
    nextgqa = dataclasses.replace(params, data=dataclasses.replace(params.data, dataset="nextgqa"))
    with pytest.raises(PipelineError, match="needs the synthetic benchmark"):
        visual_features.write_oracle_features(nextgqa, [])
