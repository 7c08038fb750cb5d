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
Each file's metadata carries `feature_checksum` over its feature columns (tokens, mask, pooled).

Several processes (`features.launch`, see `pipeline.distributed`): the stage re-runs itself under
torchrun; for each kind, every rank takes a contiguous run of whole encoder batches (so each batch, and
its padding, is the same as with one process) balanced by text count, writes its part
(`pipeline.artifacts.shards`), and rank 0 merges the parts into the files one process writes, byte
for byte.

Shape notation: N unique texts of one kind, L tokens, D encoder width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import numpy_to_fixed_list, read_table, write_table
from pipeline.artifacts.shards import (
    RERUN_HINT,
    ColumnChecksum,
    Part,
    PartFile,
    build_in_parts,
    fingerprint,
    part_path,
    read_parts,
)
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
from pipeline.config import Params, TextFeaturesConfig, to_dict
from pipeline.distributed import balanced_ranges, needs_relaunch, rank_context, relaunch
from pipeline.encoders.text import TextEncoder, load_text_encoder
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger, timed

log = get_logger("text_features")

KIND_LABELS = {"question": "questions", "option": "options", "qa": "question+answer texts"}
# The columns `feature_checksum` covers (`qa` has no tokens or mask).
FEATURE_COLUMNS = ("tokens", "mask", "pooled")


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
    checksum = ColumnChecksum([name for name in FEATURE_COLUMNS if name in table.column_names]).update(table)
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
        **checksum.metadata(),
    }


def write_kind(
    encoder: TextEncoder,
    cfg: TextFeaturesConfig,
    kind: str,
    table: pa.Table,
    path: str | Path,
    extra: dict | None = None,
) -> dict[str, Any]:
    """Write one kind's table (all its rows, or a part's) with its metadata; returns the metadata."""
    max_len = kind_max_len(kind, cfg.question_max_len, cfg.answer_max_len)
    meta = {**text_metadata(encoder, cfg, kind, table), **(extra or {})}
    write_table(table, path, kind_schema(kind, encoder.dim, max_len, cfg.dtype), meta)
    return meta


def _log_kind(kind: str, meta: dict[str, Any]) -> None:
    log.info(
        "%s: %d unique texts, %d longer than %d tokens (truncated; longest %d)",
        kind,
        meta["num_texts"],
        meta["num_truncated"],
        meta["max_len"],
        meta["max_num_tokens"],
    )


def write_text_features(
    encoder: TextEncoder, cfg: TextFeaturesConfig, texts: dict[str, list[str]], out_dir: str | Path
) -> dict[str, int]:
    """Encode and write every kind into `out_dir`; returns the row count of each kind."""
    out_dir = Path(out_dir)
    counts = {}
    for kind in KINDS:
        max_len = kind_max_len(kind, cfg.question_max_len, cfg.answer_max_len)
        table = encode_kind(encoder, kind, texts[kind], max_len, cfg.dtype)
        _log_kind(kind, write_kind(encoder, cfg, kind, table, out_dir / file_name(kind)))
        counts[kind] = table.num_rows
    return counts


# ---------------------------------------------------------------------------------------------
# Several processes: one part per rank (three files), merged by rank 0


def batch_shards(num_texts: int, batch_size: int, count: int) -> list[range]:
    """Each rank's texts of one kind: a contiguous run of whole encoder batches, balanced by text count."""
    starts = list(range(0, num_texts, batch_size))
    spans = balanced_ranges([min(batch_size, num_texts - start) for start in starts], count)
    return [range(min(span.start * batch_size, num_texts), min(span.stop * batch_size, num_texts)) for span in spans]


@dataclass
class ShardedText:
    """Every kind's texts as one part per rank (a file per kind): contiguous runs of whole encoder
    batches, balanced by text count; how a rank writes its part, and how rank 0 merges. Build with `plan`."""

    encoder: TextEncoder
    cfg: TextFeaturesConfig
    texts: dict[str, list[str]]
    out_dir: Path
    parts: list[Part]
    rows: list[dict[str, range]]  # each part's rows of each kind

    @classmethod
    def plan(
        cls, encoder: TextEncoder, cfg: TextFeaturesConfig, texts: dict[str, list[str]], out_dir: str | Path, count: int
    ) -> ShardedText:
        settings = {"model": encoder.name, "model_checksum": encoder.source.checksum, "config": to_dict(cfg)}
        shards = {kind: batch_shards(len(texts[kind]), cfg.batch_size, count) for kind in KINDS}
        parts, rows = [], []
        for index in range(count):
            mine = {kind: shards[kind][index] for kind in KINDS}
            files = []
            for kind in KINDS:
                span = mine[kind]
                made_from = {**settings, "kind": kind, "index": index, "count": count, "first_row": span.start}
                made_from["texts"] = fingerprint(texts[kind][span.start : span.stop])
                files.append(PartFile(part_path(out_dir, index, count, kind), fingerprint(made_from)))
            description = ", ".join(f"{len(mine[kind])} {KIND_LABELS[kind]}" for kind in KINDS)
            parts.append(Part(index, count, description, tuple(files)))
            rows.append(mine)
        return cls(encoder, cfg, texts, Path(out_dir), parts, rows)

    def write_part(self, part: Part) -> None:
        cfg = self.cfg
        for kind, file in zip(KINDS, part.files, strict=True):
            span = self.rows[part.index][kind]
            max_len = kind_max_len(kind, cfg.question_max_len, cfg.answer_max_len)
            table = encode_kind(self.encoder, kind, self.texts[kind][span.start : span.stop], max_len, cfg.dtype)
            write_kind(self.encoder, cfg, kind, table, file.path, part.metadata(file))

    def merge(self) -> None:
        """Write the parts' rows into the files of `out_dir` exactly as one process writes them (the parts
        must be valid: `require_parts`)."""
        for i, kind in enumerate(KINDS):
            table = read_parts([part.files[i].path for part in self.parts])
            _log_kind(kind, write_kind(self.encoder, self.cfg, kind, table, self.out_dir / file_name(kind)))


def run(params: Params) -> None:
    if needs_relaunch(params.features.launch):  # several processes wanted: run this stage under torchrun
        relaunch("text-features", params, params.features.launch, RERUN_HINT)
        return
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
    with rank_context(params.features.device) as ctx:
        encoder = load_text_encoder(cfg.model, ctx.device, batch_size=cfg.batch_size)
        with timed(log, "text encoding"):
            if ctx.world_size == 1:
                write_text_features(encoder, cfg, texts, params.paths.text_features)
            else:
                sharded = ShardedText.plan(encoder, cfg, texts, params.paths.text_features, ctx.world_size)
                build_in_parts(ctx, sharded.parts, params.paths.text_features, sharded.write_part, sharded.merge)
