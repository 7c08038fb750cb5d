"""Part files of a stage run as several processes, their checks, and reading them back for the merge.

A stage run as N processes (`pipeline.distributed`) has each rank write a *part*: one Parquet file per
file of the artifact, in the artifact's own schema, under `<output>.parts/` next to the output, named
`part-<k>-of-<N>[.<kind>].parquet`. A part file's metadata is the artifact's own (with its
`feature_checksum`) plus `part`: the shard's index, count and description, and the fingerprint of
everything the part was made from (params, encoder weights, the shard's inputs).

A part is valid when each of its files exists, carries the fingerprint the current run expects, and
its feature columns still hash to its checksum (`part_problem`). Ranks keep valid parts, so a re-run
recomputes only missing or stale ones; rank 0 refuses to merge unless every part is valid
(`require_parts`, naming each bad shard), then reads the parts in shard order (`iter_rows`,
`read_parts`) and writes the output with the layout one process writes: the same file, byte for byte.
`build_in_parts` runs that protocol on every rank.

`ColumnChecksum` is the `feature_checksum` that artifacts written this way (one process or a merge)
carry in their metadata, and that proves a part or a merge intact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.artifacts.parquet import ArtifactError, read_metadata
from pipeline.distributed import RankContext, fetch_to_main
from pipeline.runtime import get_logger

log = get_logger("shards")
R = TypeVar("R")

PARTS_SUFFIX = ".parts"
RERUN_HINT = "Re-run the stage: its processes keep the valid parts and recompute the others."


class ColumnChecksum:
    """sha256 of the values of named columns, in row order, whatever the row groups or batches.

    Each column is hashed on its own (fixed-size lists flattened to their values, in the column's
    storage dtype), then the digests are hashed together, so the same rows give the same checksum
    however they were batched. Artifacts carry it as `feature_checksum` ("sha256:<hex>"), with
    `feature_checksum_columns`.
    """

    def __init__(self, columns: Sequence[str]):
        self.columns = tuple(columns)
        self._digests = {name: hashlib.sha256() for name in self.columns}

    def update(self, data: pa.Table | pa.RecordBatch) -> ColumnChecksum:
        for name in self.columns:
            column = data.column(name)
            for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
                while pa.types.is_fixed_size_list(chunk.type):
                    chunk = chunk.flatten()  # honours slice offsets, unlike .values
                self._digests[name].update(np.ascontiguousarray(chunk.to_numpy(zero_copy_only=False)).data)
        return self

    def hexdigest(self) -> str:
        combined = hashlib.sha256()
        for name in self.columns:
            combined.update(name.encode() + b"\0" + self._digests[name].digest())
        return f"sha256:{combined.hexdigest()}"

    def metadata(self) -> dict[str, Any]:
        return {"feature_checksum": self.hexdigest(), "feature_checksum_columns": list(self.columns)}


def file_checksum(path: str | Path, columns: Sequence[str]) -> str:
    """`ColumnChecksum` of `columns` of a Parquet file, read one row group at a time."""
    checksum = ColumnChecksum(columns)
    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        checksum.update(parquet.read_row_group(group, columns=list(columns)))
    return checksum.hexdigest()


def parts_dir(output: str | Path) -> Path:
    """`<output>.parts/`, beside the output file or folder."""
    output = Path(output)
    return output.with_name(output.name + PARTS_SUFFIX)


def part_path(output: str | Path, index: int, count: int, kind: str | None = None) -> Path:
    suffix = f".{kind}" if kind else ""
    return parts_dir(output) / f"part-{index:05d}-of-{count:05d}{suffix}.parquet"


def fingerprint(record: Any) -> str:
    """sha256 of a JSON-able record (keys sorted): what a part was made from."""
    text = json.dumps(record, sort_keys=True, default=str, separators=(",", ":"))
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


@dataclass(frozen=True)
class PartFile:
    path: Path
    fingerprint: str  # what the file must have been made from


@dataclass(frozen=True)
class Part:
    """What one rank writes: its shard's files."""

    index: int  # the rank
    count: int  # the number of ranks
    description: str  # what the shard holds, e.g. "videos 'v0'..'v3': 4 videos, 128 frames"
    files: tuple[PartFile, ...]

    @property
    def name(self) -> str:
        return f"rank {self.index}'s shard of {self.count} ({self.description})"

    @property
    def paths(self) -> list[Path]:
        return [file.path for file in self.files]

    def metadata(self, file: PartFile) -> dict[str, Any]:
        """The `part` record a part file's metadata carries."""
        return {
            "part": {
                "index": self.index,
                "count": self.count,
                "description": self.description,
                "fingerprint": file.fingerprint,
            }
        }


def part_problem(part: Part) -> str | None:
    """Why `part` cannot be used (missing, made for another run, corrupt), or None when it is valid."""
    for file in part.files:
        path = file.path
        if not path.is_file():
            return f"{path} is missing (its process did not finish)"
        try:
            meta = read_metadata(path)
        except (ArtifactError, OSError, pa.ArrowException) as err:
            return f"{path} is unreadable ({err})"
        record = meta.get("part") or {}
        made_for = (record.get("index"), record.get("count"), record.get("fingerprint"))
        if made_for != (part.index, part.count, file.fingerprint):
            return (
                f"{path} does not match this run (made for rank {record.get('index')} of {record.get('count')} "
                "with other params, inputs or encoder weights)"
            )
        columns, recorded = meta.get("feature_checksum_columns"), meta.get("feature_checksum")
        if not columns or not recorded:
            return f"{path} has no feature checksum in its metadata"
        try:
            actual = file_checksum(path, columns)
        except (OSError, KeyError, pa.ArrowException) as err:
            return f"{path} is unreadable ({err})"
        if actual != recorded:
            return f"{path}: its features do not match the checksum in its metadata (modified or corrupt)"
    return None


def require_parts(parts: Sequence[Part], output: str | Path) -> None:
    """Refuse to merge unless every part is valid; the message names each bad shard and why."""
    bad = [(part, problem) for part in parts if (problem := part_problem(part))]
    if bad:
        listed = "; ".join(f"{part.name}: {problem}" for part, problem in bad)
        raise ArtifactError(f"cannot merge {output} from its {len(parts)} parts: {listed}. {RERUN_HINT}")


def _without_metadata(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata(None)


def iter_rows(paths: Sequence[Path], rows_per_group: int) -> Iterator[pa.Table]:
    """The rows of the files, in order, re-cut into tables of exactly `rows_per_group` rows (the last
    may be shorter), one row group in memory at a time."""
    pending: list[pa.Table] = []
    count = 0
    for path in paths:
        parquet = pq.ParquetFile(path)
        for group in range(parquet.num_row_groups):
            table = _without_metadata(parquet.read_row_group(group))
            while table.num_rows:
                take = min(rows_per_group - count, table.num_rows)
                pending.append(table.slice(0, take))
                table = table.slice(take)
                count += take
                if count == rows_per_group:
                    yield pa.concat_tables(pending)
                    pending, count = [], 0
    if count:
        yield pa.concat_tables(pending)


def read_parts(paths: Sequence[Path]) -> pa.Table:
    """The files' rows, in order, as one table in one chunk."""
    return pa.concat_tables([_without_metadata(pq.read_table(path)) for path in paths]).combine_chunks()


def remove_parts(parts: Sequence[Part], output: str | Path) -> None:
    """Delete the parts' files, then `<output>.parts/` if nothing else is left in it."""
    for part in parts:
        for path in part.paths:
            path.unlink(missing_ok=True)
    try:
        parts_dir(output).rmdir()
    except OSError:  # absent, or another rank's files are still there
        pass


def build_in_parts(
    ctx: RankContext,
    parts: Sequence[Part],
    output: str | Path,
    write_part: Callable[[Part], None],
    merge: Callable[[], R],
) -> R | None:
    """Every rank: write its part (`write_part`) unless a previous run left it valid; wait for all;
    then rank 0 gets the parts it cannot read from their ranks (`fetch_to_main`), refuses any
    invalid one, merges (`merge`, whose result it returns; None elsewhere) and deletes the parts."""
    mine = parts[ctx.rank]
    if part_problem(mine) is None:
        log.info("%s: kept from a previous run (%s)", mine.name, parts_dir(output))
    else:
        log.info("computing %s", mine.name)
        write_part(mine)
    ctx.barrier()
    lacking = [part.index for part in parts if part_problem(part)] if ctx.is_main else None
    fetch_to_main(ctx, [part.paths for part in parts], lacking)
    result = None
    if ctx.is_main:
        require_parts(parts, output)
        result = merge()
        remove_parts(parts, output)
    ctx.barrier()
    remove_parts([mine], output)
    return result
