"""`cra inspect`: a readable summary of Parquet artifacts (schema, rows, metadata, preview)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.artifacts.schemas import METADATA_KEY
from pipeline.errors import PipelineError


def _preview_value(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_file(path: Path, preview_rows: int = 3) -> str:
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    lines = [f"== {path}", f"rows: {parquet.metadata.num_rows}  row groups: {parquet.metadata.num_row_groups}"]
    lines.append("schema:")
    lines += [f"  {field.name}: {field.type}" for field in schema]
    meta = (schema.metadata or {}).get(METADATA_KEY)
    if meta:
        lines.append("metadata:")
        lines += ["  " + line for line in json.dumps(json.loads(meta), indent=2, sort_keys=True).splitlines()]
    if preview_rows > 0 and parquet.metadata.num_rows:
        batch = next(parquet.iter_batches(batch_size=preview_rows))
        lines.append(f"first {batch.num_rows} row(s):")
        for row in batch.to_pylist():
            lines.append("  " + ", ".join(f"{k}={_preview_value(v)}" for k, v in row.items()))
    return "\n".join(lines)


def describe(path: str | Path, preview_rows: int = 3) -> str:
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise PipelineError(f"{path} holds no .parquet files")
        return "\n\n".join(describe_file(f, preview_rows) for f in files)
    if not path.exists():
        raise PipelineError(f"{path} does not exist")
    try:
        return describe_file(path, preview_rows)
    except Exception as err:  # pyarrow raises several types for non-Parquet input
        raise PipelineError(f"{path} is not a readable Parquet file: {err}") from None
