"""Parquet I/O shared by every stage: atomic writes, schema checks, metadata, zero-copy reads.

Writes go to `.<name>.tmp-<pid>` beside the artifact and are renamed into place when complete, so a
killed stage never leaves a half-written artifact; its staging file is removed by the next write.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.artifacts.schemas import METADATA_KEY, SCHEMA_VERSION
from pipeline.errors import PipelineError
from pipeline.runtime import temp_path


class ArtifactError(PipelineError):
    """An artifact is missing, malformed, or was made with other params than the reader's."""


def _with_metadata(schema: pa.Schema, metadata: dict[str, Any] | None) -> pa.Schema:
    meta = dict(schema.metadata or {})
    meta[METADATA_KEY] = json.dumps({"schema_version": SCHEMA_VERSION, **(metadata or {})}, sort_keys=True).encode()
    return schema.with_metadata(meta)


def _tmp_path(path: Path) -> Path:
    """`.<name>.tmp-<pid>` beside `path`; stale ones from a killed run are removed (pipeline.runtime.temp_path)."""
    return temp_path(path)


def write_table(table: pa.Table, path: str | Path, schema: pa.Schema, metadata: dict[str, Any] | None = None) -> None:
    """Write `table` cast to `schema` (column order and types enforced), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise ArtifactError(f"{path}: table lacks column(s) {missing} of its schema")
    table = table.select(schema.names).cast(schema.remove_metadata())
    tmp = _tmp_path(path)
    pq.write_table(table.replace_schema_metadata(_with_metadata(schema, metadata).metadata), tmp)
    os.replace(tmp, path)


class StreamWriter:
    """Write a Parquet file batch by batch (bounded memory), atomically on close.

    with StreamWriter(path, schema, metadata) as out:
        out.write({"video_id": [...], ...})
    """

    def __init__(self, path: str | Path, schema: pa.Schema, metadata: dict[str, Any] | None = None):
        self.path = Path(path)
        self.schema = _with_metadata(schema, metadata)
        self.rows = 0
        self._tmp = _tmp_path(self.path)
        self._writer: pq.ParquetWriter | None = None
        self._metadata_updated = False

    def __enter__(self) -> StreamWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self._tmp, self.schema)
        return self

    def write(self, columns: dict[str, Any] | pa.RecordBatch | pa.Table) -> None:
        if isinstance(columns, dict):
            batch = pa.RecordBatch.from_pydict(columns, schema=self.schema)
        else:
            batch = columns
        if batch.num_rows:
            assert self._writer is not None
            self._writer.write(batch)
            self.rows += batch.num_rows

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace the metadata before the first write (e.g. once the feature width is known)."""
        if self.rows:
            raise ArtifactError("metadata must be set before rows are written")
        assert self._writer is not None
        self._writer.close()
        self.schema = _with_metadata(self.schema, metadata)
        self._writer = pq.ParquetWriter(self._tmp, self.schema)

    def update_metadata(self, metadata: dict[str, Any]) -> None:
        """Merge keys into the metadata at any time before close (e.g. what was skipped, known at the end).

        Parquet writes its footer last: on close, the footer's metadata and the Arrow schema stored
        in it (`ARROW:schema`, base64 IPC, which `pq.read_schema` prefers) are replaced.
        """
        current = json.loads(self.schema.metadata[METADATA_KEY])
        self.schema = _with_metadata(self.schema, {**current, **metadata})
        self._metadata_updated = True

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._writer is not None
        if exc_type is None and self._metadata_updated:
            self._writer.add_key_value_metadata(
                {
                    METADATA_KEY.decode(): self.schema.metadata[METADATA_KEY].decode(),
                    "ARROW:schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode(),
                }
            )
        self._writer.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata an artifact was written with."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist: run the stage that makes it (see `dvc dag`)")
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise ArtifactError(f"{path} has no `{METADATA_KEY.decode()}` metadata: it was not written by this pipeline")
    return json.loads(meta[METADATA_KEY])


def read_table(path: str | Path, schema: pa.Schema | None = None, columns: list[str] | None = None) -> pa.Table:
    """Read an artifact; with `schema`, check it has the expected columns and types."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist: run the stage that makes it (see `dvc dag`)")
    table = pq.read_table(path, columns=columns)
    if schema is not None:
        for field in schema:
            if columns is not None and field.name not in columns:
                continue
            if field.name not in table.column_names:
                raise ArtifactError(f"{path}: column `{field.name}` is missing (expected schema: {schema.names})")
            actual = table.schema.field(field.name).type
            if actual != field.type:
                raise ArtifactError(f"{path}: column `{field.name}` has type {actual}, expected {field.type}")
    return table


def require_metadata(path: str | Path, expected: dict[str, Any], param_hint: str) -> dict[str, Any]:
    """Refuse an artifact whose metadata disagrees with what the reader's params expect."""
    meta = read_metadata(path)
    wrong = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
    if wrong:
        details = "; ".join(f"{k}: artifact has {have!r}, params want {want!r}" for k, (have, want) in wrong.items())
        raise ArtifactError(
            f"{path} was made with other settings ({details}). Re-run its stage (`dvc repro`) or fix {param_hint}."
        )
    return meta


def fixed_list_to_numpy(column: pa.ChunkedArray | pa.Array, shape: tuple[int, ...]) -> np.ndarray:
    """A (nested) FixedSizeList column as an `(N, *shape)` numpy array.

    Zero-copy when the column is a single chunk without nulls (one Parquet row group, or after
    `combine_chunks`); otherwise the chunks are concatenated once.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.chunks[0] if column.num_chunks == 1 else column.combine_chunks()
    values = column
    for _ in shape:
        if values.offset:  # a sliced array: flatten() honours the offset, .values does not
            values = values.flatten()
        else:
            values = values.values
    flat = values.to_numpy(zero_copy_only=True)
    return flat.reshape(len(column), *shape)


def numpy_to_fixed_list(array: np.ndarray) -> pa.FixedSizeListArray:
    """An `(N, *shape)` numpy array as a (nested) FixedSizeList array of N rows, without copying.

    The inverse of `fixed_list_to_numpy`; the Arrow value type follows the numpy dtype
    (float16 -> halffloat, float32 -> float, int8 -> int8).
    """
    array = np.ascontiguousarray(array)
    values: pa.Array = pa.array(array.reshape(-1))
    for size in reversed(array.shape[1:]):
        values = pa.FixedSizeListArray.from_arrays(values, size)
    return values
