"""Stage `text_features`: encode every question, answer option and question+answer text once.

Reads the QA table (`paths.qa_table`) and writes the folder `paths.text_features` (layout and reader
in `pipeline.artifacts.text_features`):
  - question.parquet: each unique question, (L=question_max_len, D) token features + mask + pooled;
  - option.parquet:   each unique option string, (L=answer_max_len, D) tokens + mask + pooled.
    Options repeat a lot across questions, so each distinct string is encoded once;
  - qa.parquet:       each unique `qa_text(question, option)`, the pooled (D,) vector ONLY (schema
    `text_features(None, D)`): there are ~5 per question, and the model scores them by their
    pooled vector, so their (L, D) tokens would multiply the artifact size for nothing.

Rows are sorted by `text_id` and each file is written in one piece (one Parquet row group, so the
reader gets zero-copy numpy views); features are stored as `features.text.dtype` (float16 default).

Shape notation: N unique texts of one kind, L tokens, D encoder width.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import numpy_to_fixed_list, read_table, write_table
from pipeline.artifacts.text_features import (
    ARTIFACT,
    KINDS,
    POOLING,
    TOKEN_KINDS,
    file_name,
    kind_max_len,
    kind_schema,
    qa_text,
    text_id,
)
from pipeline.config import Params, TextFeaturesConfig
from pipeline.encoders.text import TextEncoder, load_text_encoder
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger, resolve_device, timed

log = get_logger("text_features")

KIND_LABELS = {"question": "questions", "option": "options", "qa": "question+answer texts"}


def collect_texts(questions: Sequence[str], options: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    """The unique texts of each kind, each sorted by its `text_id` (the artifact's row order)."""
    unique: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for question, row_options in zip(questions, options, strict=True):
        unique["question"].add(question)
        unique["option"].update(row_options)
        unique["qa"].update(qa_text(question, option) for option in row_options)
    return {kind: sorted(texts, key=lambda t, k=kind: text_id(k, t)) for kind, texts in unique.items()}


def read_qa_texts(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Questions and their options from the QA table; a null or missing option is an error."""
    table = read_table(path, schemas.QA, columns=["qid", "question", "options"])
    if table.num_rows == 0:
        raise PipelineError(f"{path} has no questions: check the prepare stage and `data.*` in params.yaml")
    qids = table.column("qid").to_pylist()
    questions = table.column("question").to_pylist()
    options = table.column("options").to_pylist()
    for row, (qid, question, row_options) in enumerate(zip(qids, questions, options, strict=True)):
        if question is None or not row_options or any(o is None for o in row_options):
            raise PipelineError(
                f"{path}: row {row} (qid {qid!r}) has a null question, no options or a null option; "
                "fix the annotations and re-run the prepare stage"
            )
    return questions, options


def encode_kind(encoder: TextEncoder, kind: str, texts: Sequence[str], max_len: int, dtype: str) -> pa.Table:
    """One kind's rows (in the order of `texts`) as an Arrow table of its schema's columns."""
    storage = np.dtype(dtype)
    n, dim = len(texts), encoder.dim
    with_tokens = kind in TOKEN_KINDS
    pooled = np.zeros((n, dim), dtype=storage)  # (N, D)
    num_tokens = np.zeros(n, dtype=np.int32)  # (N,)
    tokens = np.zeros((n, max_len, dim), dtype=storage) if with_tokens else None  # (N, L, D)
    mask = np.zeros((n, max_len), dtype=np.int8) if with_tokens else None  # (N, L)
    for rows, encoded in encoder.iter_encode(texts, max_len, desc=f"encode {KIND_LABELS[kind]}"):
        pooled[rows] = encoded.pooled
        num_tokens[rows] = encoded.num_tokens
        if with_tokens:
            tokens[rows] = encoded.tokens
            mask[rows] = encoded.mask
    columns: dict[str, Any] = {
        "text_id": pa.array([text_id(kind, t) for t in texts], pa.string()),
        "text": pa.array(list(texts), pa.string()),
        "num_tokens": pa.array(num_tokens),
        "pooled": numpy_to_fixed_list(pooled),
    }
    if with_tokens:
        columns["tokens"] = numpy_to_fixed_list(tokens)
        columns["mask"] = numpy_to_fixed_list(mask)
    return pa.table(columns)


def text_metadata(encoder: TextEncoder, cfg: TextFeaturesConfig, kind: str, table: pa.Table) -> dict[str, Any]:
    """What a text-feature file records: the model and settings (checked by readers), and counts."""
    max_len = kind_max_len(kind, cfg.question_max_len, cfg.answer_max_len)
    num_tokens = table.column("num_tokens").to_numpy()
    return {
        "artifact": ARTIFACT,
        "kind": kind,
        "model": encoder.name,
        "model_source": encoder.source.description,
        "model_checksum": encoder.source.checksum,
        "dim": encoder.dim,
        "max_len": max_len,
        "stores_tokens": kind in TOKEN_KINDS,
        "question_max_len": cfg.question_max_len,
        "answer_max_len": cfg.answer_max_len,
        "dtype": cfg.dtype,
        "pooling": POOLING,
        "num_texts": table.num_rows,
        "num_truncated": int((num_tokens > max_len).sum()),
        "max_num_tokens": int(num_tokens.max(initial=0)),
    }


def write_text_features(
    encoder: TextEncoder, cfg: TextFeaturesConfig, texts: dict[str, list[str]], out_dir: str | Path
) -> dict[str, int]:
    """Encode and write every kind into `out_dir`; returns the row count of each kind."""
    out_dir = Path(out_dir)
    counts = {}
    for kind in KINDS:
        max_len = kind_max_len(kind, cfg.question_max_len, cfg.answer_max_len)
        table = encode_kind(encoder, kind, texts[kind], max_len, cfg.dtype)
        meta = text_metadata(encoder, cfg, kind, table)
        write_table(table, out_dir / file_name(kind), kind_schema(kind, encoder.dim, max_len, cfg.dtype), meta)
        counts[kind] = table.num_rows
        log.info(
            "%s: %d unique texts, %d longer than %d tokens (truncated; longest %d)",
            kind,
            meta["num_texts"],
            meta["num_truncated"],
            max_len,
            meta["max_num_tokens"],
        )
    return counts


def run(params: Params) -> None:
    cfg = params.features.text
    questions, options = read_qa_texts(params.paths.qa_table)
    texts = collect_texts(questions, options)
    num_options = sum(len(o) for o in options)
    log.info(
        "%d questions -> %d unique; %d options -> %d unique strings; %d question+answer texts",
        len(questions),
        len(texts["question"]),
        num_options,
        len(texts["option"]),
        len(texts["qa"]),
    )
    encoder = load_text_encoder(cfg.model, resolve_device(params.features.device), batch_size=cfg.batch_size)
    with timed(log, "text encoding"):
        write_text_features(encoder, cfg, texts, params.paths.text_features)
