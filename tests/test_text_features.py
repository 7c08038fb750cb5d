"""Text encoder (real MiniLM weights, offline) and the `text_features` stage and reader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import ArtifactError, read_metadata, write_table
from pipeline.artifacts.text_features import (
    expected_text_metadata,
    file_name,
    qa_text,
    read_text_features,
    text_id,
)
from pipeline.config import FeaturesConfig, Params, PathsConfig, TextFeaturesConfig
from pipeline.encoders.text import MODEL_PARAM, load_text_encoder, mean_pool, resolve_text_model
from pipeline.errors import PipelineError
from stages import text_features as stage

MAX_LEN = 8
SHORT = "why did the boy cry?"  # [CLS] why did the boy cry ? [SEP]
LONG = "one two three four five six seven eight nine ten eleven"  # 11 words + 2 special tokens


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder("minilm", torch.device("cpu"), batch_size=4)


def _qa_table(rows: list[tuple[str, str, list[str], int]]) -> pa.Table:
    """rows: (qid, question, options, answer)."""
    n = len(rows)
    return pa.table(
        {
            "split": ["train"] * n,
            "qid": [r[0] for r in rows],
            "video_id": [f"v{i}" for i in range(n)],
            "question": [r[1] for r in rows],
            "options": [r[2] for r in rows],
            "answer": pa.array([r[3] for r in rows], pa.int32()),
            "type": ["CW"] * n,
            "segments": [[[0.0, 1.0]]] * n,
            "duration": [10.0] * n,
        }
    )


# Two questions share their text (different videos); options repeat across questions.
QA_ROWS = [
    ("q0", "what is the man holding?", ["a cup", "a dog", "a ball", "a hat", "a book"], 0),
    ("q1", "what is the man holding?", ["a cup", "a dog", "a ball", "a hat", "a pen"], 4),
    ("q2", "why did the girl run?", ["to catch the bus", "she was scared", "a dog", "to play", "it rained"], 1),
]
UNIQUE_QUESTIONS = 2
UNIQUE_OPTIONS = 10  # 5 + "a pen" + 4 of q2 ("a dog" repeats)
UNIQUE_QA = 5 + 1 + 5  # q0 and q1 share 4 question+answer texts


def _params(tmp_path: Path, **text_changes) -> Params:
    text = dataclasses.replace(TextFeaturesConfig(batch_size=4), **text_changes)
    return Params(
        paths=PathsConfig(qa_table=str(tmp_path / "qa.parquet"), text_features=str(tmp_path / "text")),
        features=FeaturesConfig(device="cpu", text=text),
    )


# ---------------------------------------------------------------------------------------------
# Encoder


def test_encode_shapes_truncation_and_padding_mask(encoder):
    out = encoder.encode([SHORT, "a", LONG, ""], MAX_LEN)
    assert encoder.dim == 384
    assert out.tokens.shape == (4, MAX_LEN, 384) and out.tokens.dtype == np.float32
    assert out.mask.shape == (4, MAX_LEN) and out.mask.dtype == np.int8
    assert out.pooled.shape == (4, 384) and out.pooled.dtype == np.float32
    assert out.num_tokens.tolist() == [8, 3, 13, 2]  # before truncation, special tokens included
    assert out.mask.sum(axis=1).tolist() == [8, 3, 8, 2]  # LONG truncated to MAX_LEN
    assert out.mask[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]  # real tokens first, then padding
    padded = out.mask == 0
    assert np.all(out.tokens[padded] == 0.0)  # padded positions hold no features
    assert np.all(np.abs(out.tokens[~padded]).sum(axis=-1) > 0)


def test_pooled_is_the_masked_mean_of_tokens(encoder):
    out = encoder.encode([SHORT, "a", LONG], MAX_LEN)
    mask = out.mask[..., None].astype(np.float32)
    manual = (out.tokens * mask).sum(axis=1) / mask.sum(axis=1)
    np.testing.assert_allclose(out.pooled, manual, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_pool(torch.zeros(1, 3, 2), torch.zeros(1, 3)).numpy(), [[0.0, 0.0]])


def test_pooled_matches_sentence_transformers_golden(encoder):
    """L2-normalised, our pooled vector is all-MiniLM-L6-v2's sentence embedding (sentence-transformers
    6.2.0 gives these first four values), and it ranks meaning like a trained model."""
    texts = ["a man is playing a guitar", "a person plays the guitar", "the weather is cold today"]
    pooled = encoder.encode(texts, 16).pooled
    unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(unit[0, :4], [0.02016609, -0.00675799, -0.0067631, -0.06437627], atol=1e-5)
    assert unit[0] @ unit[1] > 0.7 > 0.2 > unit[0] @ unit[2]


def test_truncation_keeps_the_prefix(encoder):
    """A truncated text is encoded as its first MAX_LEN - 2 words plus the special tokens."""
    long_out = encoder.encode([LONG], MAX_LEN)
    prefix_out = encoder.encode(["one two three four five six"], MAX_LEN)
    np.testing.assert_allclose(long_out.tokens, prefix_out.tokens, atol=1e-5)


def test_encoding_is_deterministic_and_batch_independent(encoder):
    texts = [SHORT, "a", LONG, "what is the man holding?", "a cup", "x y z"]
    first = encoder.encode(texts, MAX_LEN)
    again = encoder.encode(texts, MAX_LEN)
    assert np.array_equal(first.tokens, again.tokens) and np.array_equal(first.pooled, again.pooled)
    alone = encoder.encode(texts[2:3], MAX_LEN)  # another batch composition: same numbers (to fp noise)
    np.testing.assert_allclose(alone.pooled[0], first.pooled[2], atol=1e-5)


def test_token_budget_beyond_the_model_is_a_user_error(encoder):
    assert encoder.max_tokens == 512
    with pytest.raises(PipelineError, match=r"600 exceeds the 512 tokens `minilm` accepts.*question_max_len"):
        encoder.encode(["a"], 600)


def test_missing_local_folder_names_the_param(tmp_path: Path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(PipelineError) as err:
        load_text_encoder(missing, torch.device("cpu"))
    message = str(err.value)
    assert MODEL_PARAM in message and missing in message and "no such folder" in message and "minilm" in message


def test_folder_without_a_model_is_refused(tmp_path: Path):
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(PipelineError, match=r"features\.text\.model.*has no config\.json"):
        resolve_text_model(str(tmp_path / "empty-model"))


def test_hugging_face_id_not_in_cache_names_the_param(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(PipelineError) as err:
        load_text_encoder("FacebookAI/roberta-base", torch.device("cpu"))
    message = str(err.value)
    assert MODEL_PARAM in message and "'FacebookAI/roberta-base'" in message and "Hugging Face cache" in message
    with pytest.raises(PipelineError, match="neither a folder nor a valid Hugging Face id"):
        resolve_text_model("not a model!")


# ---------------------------------------------------------------------------------------------
# Stage and reader


def test_collect_texts_encodes_each_unique_string_once():
    questions = [r[1] for r in QA_ROWS]
    options = [r[2] for r in QA_ROWS]
    texts = stage.collect_texts(questions, options)
    assert {k: len(v) for k, v in texts.items()} == {
        "question": UNIQUE_QUESTIONS,
        "option": UNIQUE_OPTIONS,
        "qa": UNIQUE_QA,
    }
    assert sum(len(o) for o in options) == 15  # 15 options in, 10 encoded
    assert texts["option"] == sorted(texts["option"], key=lambda t: text_id("option", t))
    assert qa_text(" why? ", "because ") == "why? because"
    assert qa_text("why did the girl run?", "to play") in texts["qa"]


def test_stage_round_trip(tmp_path: Path, encoder):
    params = _params(tmp_path)
    write_table(_qa_table(QA_ROWS), params.paths.qa_table, schemas.QA)
    stage.run(params)

    features = read_text_features(params.paths.text_features, expected_text_metadata(params))
    assert (len(features.question), len(features.option), len(features.qa)) == (
        UNIQUE_QUESTIONS,
        UNIQUE_OPTIONS,
        UNIQUE_QA,
    )
    assert features.dim == 384
    q, o = features.question, features.option
    assert q.tokens.shape == (UNIQUE_QUESTIONS, 30, 384) and q.tokens.dtype == np.float16
    assert o.tokens.shape == (UNIQUE_OPTIONS, 38, 384) and o.mask.shape == (UNIQUE_OPTIONS, 38)
    assert features.qa.tokens is None and features.qa.mask is None and features.qa.pooled.shape == (UNIQUE_QA, 384)

    # Lookups by text, and the stored vectors are the encoder's (at float16 storage precision).
    rows = q.rows([r[1] for r in QA_ROWS])
    assert rows[0] == rows[1] != rows[2]
    direct = encoder.encode(["why did the girl run?"], 30)
    np.testing.assert_allclose(q.pooled[q["why did the girl run?"]], direct.pooled[0], atol=2e-3)
    np.testing.assert_array_equal(q.mask[q["why did the girl run?"]], direct.mask[0])
    qa_rows = features.qa_rows("why did the girl run?", QA_ROWS[2][2])
    assert qa_rows.shape == (5,) and len(set(qa_rows.tolist())) == 5
    expected_qa = encoder.encode([qa_text("why did the girl run?", "it rained")], 38).pooled[0]
    np.testing.assert_allclose(features.qa.pooled[qa_rows[4]], expected_qa, atol=2e-3)
    assert features.option.num_tokens[features.option["a dog"]] == 4  # [CLS] a dog [SEP]

    meta = read_metadata(Path(params.paths.text_features) / file_name("qa"))
    assert meta["max_len"] == 38 and meta["stores_tokens"] is False and meta["pooling"] == "mean"
    assert meta["model"] == "minilm" and len(meta["model_checksum"]) == 64
    with pytest.raises(ArtifactError, match="not in the text features"):
        q.rows(["a question nobody asked?"])


def test_stage_output_bytes_are_deterministic(tmp_path: Path, encoder):
    cfg = TextFeaturesConfig(batch_size=3)
    texts = stage.collect_texts([r[1] for r in QA_ROWS], [r[2] for r in QA_ROWS])
    stage.write_text_features(encoder, cfg, texts, tmp_path / "a")
    stage.write_text_features(encoder, cfg, texts, tmp_path / "b")
    for kind in ("question", "option", "qa"):
        assert (tmp_path / "a" / file_name(kind)).read_bytes() == (tmp_path / "b" / file_name(kind)).read_bytes()


def test_features_made_with_other_params_are_refused(tmp_path: Path, encoder):
    params = _params(tmp_path, question_max_len=12, answer_max_len=10, dtype="float32")
    texts = stage.collect_texts([r[1] for r in QA_ROWS], [r[2] for r in QA_ROWS])
    stage.write_text_features(encoder, params.features.text, texts, params.paths.text_features)
    features = read_text_features(params.paths.text_features, expected_text_metadata(params))
    assert features.question.tokens.shape[1:] == (12, 384) and features.question.tokens.dtype == np.float32

    other = _params(tmp_path, question_max_len=30, answer_max_len=10, dtype="float32")
    with pytest.raises(ArtifactError, match=r"question_max_len: artifact has 12, params want 30"):
        read_text_features(params.paths.text_features, expected_text_metadata(other))
    roberta = _params(tmp_path, model="roberta-base", question_max_len=12, answer_max_len=10, dtype="float32")
    with pytest.raises(ArtifactError, match=r"model: artifact has 'minilm', params want 'roberta-base'"):
        read_text_features(params.paths.text_features, expected_text_metadata(roberta))


def test_null_option_is_a_user_error(tmp_path: Path):
    path = tmp_path / "qa.parquet"
    write_table(_qa_table([("q7", "what?", ["a", None, "c"], 0)]), path, schemas.QA)
    with pytest.raises(PipelineError, match=r"row 0 \(qid 'q7'\) has .* a null option"):
        stage.read_qa_texts(path)
