"""The text-feature artifact (`paths.text_features`): its layout, its metadata, and its reader.

The folder holds one Parquet file per kind of text, each with one row per UNIQUE text, sorted by
`text_id` (a stable hash), so identical inputs give identical bytes:

  question.parquet  every question,            tokens (L=question_max_len) + mask + pooled
  option.parquet    every answer option,       tokens (L=answer_max_len) + mask + pooled
  qa.parquet        every `qa_text(q, option)`, pooled only (truncated at answer_max_len)

The trainer looks texts up by their string (`TextFeatures.question.rows(questions)`), never by
position in the QA table. This module imports neither torch nor transformers: models/ and the
trainer read features without loading the encoder.

Shape notation: N unique texts of one kind, L tokens (max_len of the kind), D encoder width.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import ArtifactError, fixed_list_to_numpy, read_metadata, read_table, require_metadata

ARTIFACT = "text_features"
KINDS = ("question", "option", "qa")
# Kinds stored with their (L, D) token features; `qa` keeps the pooled vector only.
TOKEN_KINDS = ("question", "option")
POOLING = "mean"  # attention-mask mean of the last hidden states (pipeline.encoders.text.mean_pool)
PARAM_HINT = "`features.text.*` in params.yaml"


def file_name(kind: str) -> str:
    return f"{kind}.parquet"


def qa_text(question: str, option: str) -> str:
    """The question+answer text the model scores for one option: the one place it is composed."""
    return f"{question.strip()} {option.strip()}"


def text_id(kind: str, text: str) -> str:
    """Stable 16-hex id of a text of one kind (the row order of the artifact)."""
    return hashlib.sha1(f"{kind}\n{text}".encode()).hexdigest()[:16]


def kind_max_len(kind: str, question_max_len: int, answer_max_len: int) -> int:
    """Token budget of a kind. QA texts use the answer budget, as TempCLIP/CRA encode the candidate
    answers as question+answer strings with `amax_words` (38) > `qmax_words` (30)."""
    if kind not in KINDS:
        raise ValueError(f"unknown text kind {kind!r}; expected one of {KINDS}")
    return question_max_len if kind == "question" else answer_max_len


def kind_schema(kind: str, dim: int, max_len: int, dtype: str) -> pa.Schema:
    """The Arrow schema of one kind's file; `qa` has no token columns."""
    storage = pa.from_numpy_dtype(np.dtype(dtype))
    return schemas.text_features(max_len if kind in TOKEN_KINDS else None, dim, storage)


def expected_text_metadata(params: Any) -> dict[str, Any]:
    """Metadata every text-feature file must carry to be used with `params` (a `Params`)."""
    text = params.features.text
    return {
        "artifact": ARTIFACT,
        "model": text.model,
        "question_max_len": text.question_max_len,
        "answer_max_len": text.answer_max_len,
        "dtype": text.dtype,
        "pooling": POOLING,
    }


@dataclass(frozen=True)
class TextTable:
    """The unique texts of one kind with their features; arrays are zero-copy views of Arrow data.

    Arrays keep the storage dtype (`features.text.dtype`, float16 by default): cast per batch.
    """

    kind: str
    path: Path
    texts: list[str]  # (N,)
    index: dict[str, int]  # text -> row
    num_tokens: np.ndarray  # (N,) int32, before truncation
    pooled: np.ndarray  # (N, D)
    tokens: np.ndarray | None  # (N, L, D), zero at padded positions; None for `qa`
    mask: np.ndarray | None  # (N, L) int8, 1 = real token; None for `qa`

    def __len__(self) -> int:
        return len(self.texts)

    def __contains__(self, text: object) -> bool:
        return text in self.index

    def __getitem__(self, text: str) -> int:
        """Row of one text."""
        return int(self.rows([text])[0])

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts),) int64 rows of `texts`; refuses texts the artifact lacks."""
        index = self.index
        missing = [t for t in texts if t not in index]
        if missing:
            raise ArtifactError(
                f"{self.path}: {len(missing)} {self.kind} text(s) are not in the text features, e.g. "
                f"{missing[0]!r}. They were made from another QA table: re-run the text_features stage (`dvc repro`)."
            )
        return np.fromiter((index[t] for t in texts), dtype=np.int64, count=len(texts))


@dataclass(frozen=True)
class TextFeatures:
    """The three tables of `paths.text_features`, plus the metadata they were written with."""

    question: TextTable
    option: TextTable
    qa: TextTable
    metadata: dict[str, Any]  # of question.parquet (model, model_checksum, dim, dtype, pooling, ...)

    @property
    def dim(self) -> int:
        return int(self.metadata["dim"])

    def qa_rows(self, question: str, options: Sequence[str]) -> np.ndarray:
        """(A,) rows in `qa` of the question+answer texts of one question's A options."""
        return self.qa.rows([qa_text(question, option) for option in options])


def _read_kind(folder: Path, kind: str, expected: dict[str, Any] | None) -> tuple[TextTable, dict[str, Any]]:
    path = folder / file_name(kind)
    meta = require_metadata(path, expected, PARAM_HINT) if expected is not None else read_metadata(path)
    if meta.get("artifact") != ARTIFACT or meta.get("kind") != kind:
        raise ArtifactError(
            f"{path} is not a `{kind}` text-feature file (metadata artifact {meta.get('artifact')!r}, "
            f"kind {meta.get('kind')!r}); re-run the text_features stage"
        )
    dim, max_len = int(meta["dim"]), int(meta["max_len"])
    table = read_table(path, kind_schema(kind, dim, max_len, meta["dtype"]))
    texts = table.column("text").to_pylist()
    with_tokens = kind in TOKEN_KINDS
    text_table = TextTable(
        kind=kind,
        path=path,
        texts=texts,
        index={text: row for row, text in enumerate(texts)},
        num_tokens=table.column("num_tokens").to_numpy(),
        pooled=fixed_list_to_numpy(table.column("pooled"), (dim,)),
        tokens=fixed_list_to_numpy(table.column("tokens"), (max_len, dim)) if with_tokens else None,
        mask=fixed_list_to_numpy(table.column("mask"), (max_len,)) if with_tokens else None,
    )
    if len(text_table.index) != len(texts):
        raise ArtifactError(f"{path} repeats texts; re-run the text_features stage")
    return text_table, meta


def read_text_features(folder: str | Path, expected: dict[str, Any] | None) -> TextFeatures:
    """Read `paths.text_features`. With `expected` (see `expected_text_metadata`), refuse files made
    with another model, max lengths, dtype or pooling; all three files must share one encoder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder} does not exist: run the text_features stage (see `dvc dag`)")
    tables, metas = {}, {}
    for kind in KINDS:
        tables[kind], metas[kind] = _read_kind(folder, kind, expected)
    for key in ("model", "model_checksum", "dim", "dtype"):
        values = {kind: metas[kind].get(key) for kind in KINDS}
        if len(set(map(repr, values.values()))) > 1:
            raise ArtifactError(
                f"{folder}: the text-feature files disagree on `{key}` ({values}); re-run the text_features stage"
            )
    return TextFeatures(
        question=tables["question"], option=tables["option"], qa=tables["qa"], metadata=metas["question"]
    )
