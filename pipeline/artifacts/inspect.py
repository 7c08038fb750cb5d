"""`cra inspect`: a readable summary of any artifact the pipeline writes, by file type.

- Parquet (`.parquet`): schema, rows, the pipeline's metadata record, the first rows.
- JSON (`.json`: checkpoint state, reports, official result files): schema-free, each top-level key with
  its type and size (nested objects and lists are counted, not printed); large objects show their first keys.
- safetensors (`.safetensors`: checkpoint weights): each tensor's name, dtype and shape, and the totals,
  read from the file's header alone (no tensor is loaded).

A folder is summarised file by file (those three types, recursively, in path order).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.artifacts.schemas import METADATA_KEY
from pipeline.errors import PipelineError

# Beyond this many keys, a JSON object shows only its first `preview_rows` entries.
MAX_JSON_KEYS = 40


def _preview_value(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_parquet(path: Path, preview_rows: int = 3) -> str:
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


def _json_summary(value: Any) -> str:
    """One line: a scalar as itself; an object or a list by its size and the kinds inside."""
    if isinstance(value, dict):
        keys = list(value)
        shown = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")
        return f"object, {len(keys)} key(s)" + (f": {shown}" if keys else "")
    if isinstance(value, list):
        kinds = sorted({type(item).__name__ for item in value})
        if value and all(isinstance(item, int | float) and not isinstance(item, bool) for item in value):
            return f"list of {len(value)} number(s), [{min(value):g} .. {max(value):g}]"
        return f"list of {len(value)}" + (f" ({', '.join(kinds)})" if kinds else "")
    return _preview_value(value)


def describe_json(path: Path, preview_rows: int = 3) -> str:
    data = json.loads(path.read_text())
    kind = f"object, {len(data)} key(s)" if isinstance(data, dict) else _json_summary(data)
    lines = [f"== {path}", f"JSON {kind}"]
    if isinstance(data, dict):
        items = list(data.items())
        if len(items) > MAX_JSON_KEYS:
            lines.append(f"first {min(preview_rows, len(items))} of {len(items)} keys:")
            items = items[:preview_rows]
        lines += [f"  {key}: {_json_summary(value)}" for key, value in items]
    elif isinstance(data, list):
        lines += [f"  [{index}]: {_json_summary(item)}" for index, item in enumerate(data[:preview_rows])]
    return "\n".join(lines)


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: an 8-byte little-endian length, then the header itself."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{len(prefix)} bytes, shorter than the header's length field")
        (length,) = struct.unpack("<Q", prefix)
        if length > path.stat().st_size - 8:
            raise ValueError(f"header length {length} runs past the end of the file")
        return json.loads(handle.read(length))


def describe_safetensors(path: Path, preview_rows: int = 3) -> str:
    header = _safetensors_header(path)
    metadata = header.pop("__metadata__", None)
    elements = sum(math.prod(entry["shape"]) for entry in header.values())
    nbytes = sum(entry["data_offsets"][1] - entry["data_offsets"][0] for entry in header.values())
    lines = [f"== {path}", f"tensors: {len(header)}  elements: {elements:,}  bytes: {nbytes:,}"]
    if metadata:
        lines.append(f"metadata: {json.dumps(metadata, sort_keys=True)}")
    width = max((len(name) for name in header), default=0)
    lines += [f"  {name:<{width}}  {entry['dtype']:<4} {entry['shape']}" for name, entry in sorted(header.items())]
    return "\n".join(lines)


# suffix -> (what the error message calls it, the function that summarises it)
DESCRIBERS: dict[str, tuple[str, Callable[[Path, int], str]]] = {
    ".parquet": ("Parquet", describe_parquet),
    ".json": ("JSON", describe_json),
    ".safetensors": ("safetensors", describe_safetensors),
}


def describe_file(path: Path, preview_rows: int = 3) -> str:
    if path.suffix not in DESCRIBERS:
        raise PipelineError(f"{path}: `cra inspect` reads {', '.join(DESCRIBERS)} files (or a folder of them)")
    kind, describer = DESCRIBERS[path.suffix]
    try:
        return describer(path, preview_rows)
    except Exception as err:  # pyarrow, json and struct raise several types for a malformed file
        raise PipelineError(f"{path} is not a readable {kind} file: {err}") from None


def describe(path: str | Path, preview_rows: int = 3) -> str:
    path = Path(path)
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in DESCRIBERS)
        if not files:
            raise PipelineError(f"{path} holds no {', '.join(DESCRIBERS)} files")
        return "\n\n".join(describe_file(f, preview_rows) for f in files)
    if not path.exists():
        raise PipelineError(f"{path} does not exist")
    return describe_file(path, preview_rows)
