"""Confounder dictionaries: MiniBatchKMeans on known blobs, K policies, graph embeddings, the stage."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipeline.artifacts import schemas
from pipeline.artifacts.confounders import expected_confounder_metadata, read_confounders
from pipeline.artifacts.parquet import ArtifactError, write_table
from pipeline.config import (
    ClustersConfig,
    DecodeConfig,
    FeaturesConfig,
    Params,
    PathsConfig,
    TextFeaturesConfig,
    VisualFeaturesConfig,
)
from pipeline.encoders.text import embed_graph_nodes, load_text_encoder
from pipeline.errors import PipelineError
from stages import confounders as stage

BLOB_CENTERS = np.array([[0.0] * 6, [10.0] * 6, [-10.0, 10.0, -10.0, 10.0, -10.0, 10.0]], dtype=np.float32)
BLOB_SIZES = (4, 8, 12)


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder("minilm", torch.device("cpu"), batch_size=8)


def _blobs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [c + 0.1 * rng.standard_normal((n, 6)) for c, n in zip(BLOB_CENTERS, BLOB_SIZES, strict=True)]
    return np.concatenate(parts).astype(np.float32)  # (24, 6)


def _cfg(**changes) -> ClustersConfig:
    return ClustersConfig(**{"batch_size": 64, "max_iter": 50, "seed": 0, **changes})


# ---------------------------------------------------------------------------------------------
# Clustering


def test_three_blobs_give_three_clusters_of_the_right_sizes():
    points = _blobs()
    result = stage.fit_dictionary(points, 3, _cfg(), "clusters.visual_k", "points")
    assert result.centers.shape == (3, 6) and result.centers.dtype == np.float32
    assert sorted(result.sizes.tolist()) == sorted(BLOB_SIZES)
    np.testing.assert_allclose(result.prior, result.sizes / 24, rtol=1e-6)
    assert result.prior.sum() == pytest.approx(1.0)
    for center, size in zip(BLOB_CENTERS, BLOB_SIZES, strict=True):
        nearest = np.linalg.norm(result.centers - center, axis=1).argmin()
        assert np.linalg.norm(result.centers[nearest] - center) < 0.2 and result.sizes[nearest] == size
    stats = result.stats
    assert (stats["k_requested"], stats["k_used"], stats["k_reduced"], stats["n_points"]) == (3, 3, False, 24)
    assert (stats["empty_clusters"], stats["size_min"], stats["size_median"], stats["size_max"]) == (0, 4, 8.0, 12)
    assert 0 < stats["inertia"] < 24 * 6 * 0.1**2 * 2  # about N * D * noise variance


def test_clustering_is_deterministic_for_a_seed():
    points = _blobs(seed=1)
    cfg = _cfg(seed=7)
    first = stage.fit_dictionary(points, 5, cfg, "clusters.visual_k", "points")
    again = stage.fit_dictionary(points, 5, cfg, "clusters.visual_k", "points")
    assert np.array_equal(first.centers, again.centers) and np.array_equal(first.sizes, again.sizes)
    assert first.stats == again.stats


def test_k_above_distinct_points_is_reduced_with_a_warning(cra_log):
    points = np.repeat(np.eye(4, 3, dtype=np.float32), [1, 2, 3, 1], axis=0)  # 7 points, 4 distinct
    result = stage.fit_dictionary(points, 6, _cfg(on_too_few_points="reduce"), "clusters.visual_k", "points")
    assert result.centers.shape == (4, 3)
    assert sorted(result.sizes.tolist()) == [1, 1, 2, 3]
    assert (result.stats["k_requested"], result.stats["k_used"], result.stats["k_reduced"]) == (6, 4, True)
    assert (result.stats["n_points"], result.stats["n_distinct"]) == (7, 4)
    warnings = [r.getMessage() for r in cra_log.records if r.levelno == logging.WARNING]
    assert any("`clusters.visual_k` = 6 exceeds the 4 distinct points" in w for w in warnings)


def test_k_above_distinct_points_with_error_policy_names_the_param():
    points = _blobs()[:5]
    with pytest.raises(PipelineError) as err:
        stage.fit_dictionary(points, 8, _cfg(on_too_few_points="error"), "clusters.language_k", "graphs")
    message = str(err.value)
    assert "`clusters.language_k` = 8 exceeds the 5 distinct graphs" in message
    assert "clusters.on_too_few_points: reduce" in message


def test_no_points_is_a_user_error():
    with pytest.raises(PipelineError, match="no frame features to cluster for `clusters.visual_k`"):
        stage.fit_dictionary(np.zeros((0, 6), np.float32), 3, _cfg(), "clusters.visual_k", "frame features")


# ---------------------------------------------------------------------------------------------
# Graph embeddings


def test_graph_nodes_embed_once_per_distinct_string(encoder, monkeypatch):
    graphs = [
        ["what is the dog doing?", "what", "dog", "run", "", "the dog runs", "run", ""],
        ["what is the dog doing?", "what", "dog", "jump", "", "the dog jumps", "jump", ""],
        ["why did the car stop?", "why", "car", "stop", "road", "it was red", "", ""],
    ]
    lens = stage.node_max_lens(30, 38)
    assert lens == [30, 30, 30, 30, 30, 38, 38, 38]
    encoded: list[tuple[int, str]] = []
    original = encoder.encode_pooled

    def counting(texts, max_len, desc=None):
        encoded.extend((max_len, t) for t in texts)
        return original(texts, max_len, desc)

    monkeypatch.setattr(encoder, "encode_pooled", counting)
    embedded = embed_graph_nodes(encoder, graphs, lens)
    assert embedded.shape == (3, 8, 384) and embedded.dtype == np.float32
    assert len(encoded) == len(set(encoded)) == 10 + 5  # distinct non-empty strings per token budget
    assert np.all(embedded[:, 7] == 0) and np.all(embedded[0, 4] == 0) and np.all(embedded[2, 6] == 0)
    assert np.array_equal(embedded[0, 0], embedded[1, 0])  # same question, same vector
    # "run" as a verb (30-token budget) and as an answer verb (38): encoded twice, same vector.
    np.testing.assert_allclose(embedded[0, 3], embedded[0, 6], atol=1e-5)
    np.testing.assert_allclose(embedded[2, 0], encoder.encode(["why did the car stop?"], 30).pooled[0], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Stage


TRAIN_GRAPHS = [
    ("the dog", "run"),
    ("the dog", "jump"),
    ("a small dog", "bark"),
    ("the red car", "stop"),
    ("the blue car", "turn"),
    ("a fast car", "park"),
]


def _write_inputs(tmp_path: Path, params: Params, T: int = 4, D: int = 6) -> None:
    # Train videos v0..v5 (frames from three blobs: 4, 8 and 12 frames), v_missing has no features,
    # the val video v9 sits far away: it must not be clustered.
    rng = np.random.default_rng(3)
    blob_of_video = [0, 1, 1, 2, 2, 2]
    features = [BLOB_CENTERS[b] + 0.1 * rng.standard_normal((T, D)) for b in blob_of_video]
    features.append(np.full((T, D), 100.0))
    video_ids = [f"v{i}" for i in range(6)] + ["v9"]
    visual = pa.table(
        {
            "video_id": video_ids,
            "frame_indices": [list(range(T))] * 7,
            "timestamps": [[float(t) for t in range(T)]] * 7,
            "features": np.stack(features).astype(np.float32).tolist(),
        }
    )
    visual_meta = {
        "artifact": "visual_features",
        "model": "ViT-S-32",
        "pretrained": "none",
        "num_frames": T,
        "dim": D,
        "dtype": "float32",
    }
    write_table(visual, params.paths.visual_features, schemas.visual_features(T, D), visual_meta)

    qa_videos = video_ids[:6] + ["v_missing", "v9"]
    splits = ["train"] * 7 + ["val"]
    n = len(qa_videos)
    qa = pa.table(
        {
            "split": splits,
            "qid": [f"q{i}" for i in range(n)],
            "video_id": qa_videos,
            "question": ["what happens?"] * n,
            "options": [["a", "b"]] * n,
            "answer": pa.array([0] * n, pa.int32()),
            "type": ["CW"] * n,
            "segments": [[]] * n,
            "duration": [4.0] * n,
        }
    )
    write_table(qa, params.paths.qa_table, schemas.QA)

    graphs = TRAIN_GRAPHS + [("a cat", "sleep")]
    svo = {
        "split": ["train"] * 6 + ["val"],
        "qid": [f"q{i}" for i in range(7)],
        "video_id": video_ids,
        "node_question": [f"what does {s} do?" for s, _ in graphs],
        "node_question_type": ["what"] * 7,
        "node_subject": [s for s, _ in graphs],
        "node_verbs": ["do"] * 7,
        "node_objects": [""] * 7,
        "node_answer": [f"{s} {v}s" for s, v in graphs],
        "node_answer_verbs": [v for _, v in graphs],
        "node_answer_objects": [""] * 7,
        "triples": [[{"subject": s, "verb": v, "object": ""}] for s, v in graphs],
    }
    write_table(pa.table(svo), params.paths.svo_graphs, schemas.SVO_GRAPHS, {"parser": "spacy"})


def _params(tmp_path: Path, **cluster_changes) -> Params:
    return Params(
        paths=PathsConfig(
            qa_table=str(tmp_path / "qa.parquet"),
            visual_features=str(tmp_path / "visual.parquet"),
            svo_graphs=str(tmp_path / "svo.parquet"),
            confounders=str(tmp_path / "confounders"),
        ),
        decode=DecodeConfig(num_frames=4),
        features=FeaturesConfig(device="cpu", text=TextFeaturesConfig(batch_size=8)),
        clusters=_cfg(**{"visual_k": 3, "language_k": 2, **cluster_changes}),
    )


def test_stage_round_trip(tmp_path: Path, encoder, monkeypatch):
    params = _params(tmp_path)
    _write_inputs(tmp_path, params)

    def shared_encoder(model, device, batch_size):
        assert (model, device.type, batch_size) == ("minilm", "cpu", 8)
        return encoder

    monkeypatch.setattr(stage, "load_text_encoder", shared_encoder)  # the module's encoder, loaded once
    stage.run(params)

    visual, visual_prior, language, language_prior, meta = read_confounders(
        params.paths.confounders, expected_confounder_metadata(params)
    )
    assert visual.shape == (3, 6) and visual_prior.shape == (3,) and visual.dtype == np.float32
    assert language.shape == (2, 8, 384) and language_prior.shape == (2,)
    v_meta, l_meta = meta["visual"], meta["language"]
    assert (v_meta["n_points"], v_meta["n_videos"], v_meta["n_videos_missing"]) == (24, 6, 1)  # v9 (val) left out
    assert sorted((visual_prior * 24).round().astype(int).tolist()) == sorted(BLOB_SIZES)
    assert np.abs(visual).max() < 11  # no centroid near the val video's features (100)
    assert v_meta["visual_model"] == "ViT-S-32" and v_meta["visual_source"]["model"] == "ViT-S-32"

    assert (l_meta["n_points"], l_meta["n_questions"], l_meta["k_used"]) == (6, 6, 2)
    assert sorted((language_prior * 6).round().astype(int).tolist()) == [3, 3]  # dogs vs cars
    assert np.all(language[:, 4] == 0) and np.all(language[:, 7] == 0)  # always-empty nodes
    assert l_meta["text_model"] == "minilm" and l_meta["text_model_checksum"] == encoder.source.checksum
    assert l_meta["svo_source"] == {"parser": "spacy", "schema_version": schemas.SCHEMA_VERSION}

    with pytest.raises(ArtifactError, match=r"k_requested: artifact has 3, params want 16"):
        read_confounders(params.paths.confounders, expected_confounder_metadata(_params(tmp_path, visual_k=16)))


def test_stage_refuses_visual_features_of_another_model(tmp_path: Path):
    params = _params(tmp_path)
    _write_inputs(tmp_path, params)
    other = Params(
        paths=params.paths,
        decode=params.decode,
        features=FeaturesConfig(device="cpu", visual=VisualFeaturesConfig(model="ViT-L-14")),
        clusters=params.clusters,
    )
    with pytest.raises(ArtifactError, match=r"model: artifact has 'ViT-S-32', params want 'ViT-L-14'"):
        stage.run(other)
