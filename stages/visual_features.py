"""Stage `visual_features`: decode each usable video's T sampled frames, encode them with open_clip.

Reads the rows of `paths.video_manifest` with status `ok` (their `frame_indices` and `timestamps`
come from `prepare`) and writes `paths.visual_features` (schema `pipeline.artifacts.schemas.visual_features`;
read it with `pipeline.artifacts.visual_features.read_visual_features`). Output rows follow manifest order.

The data path, bounded in memory whatever the number of videos:
  decode workers (`pipeline.data.decode.iter_decoded`): decord decode + resize/crop, `prefetch_videos` ahead
  -> `FrameBatcher`: frames of consecutive videos packed into encoder batches of `batch_size` frames,
     features split back per video (a batch spans videos; no video waits for a full batch of its own)
  -> `VisualEncoder.encode` in this process (it gets the cores; decode workers use one thread each)
  -> `StreamWriter`: one Parquet row group per ~16 MiB of features.
A video that fails to decode here (the manifest said `ok`, but decord raises, or its decode takes
longer than `decode.timeout_s`) is logged, listed in the metadata `skipped_videos` with its status
(`corrupt` or `timeout`) and reason, and left out; the run goes on.

Several processes (`features.launch`, see `pipeline.distributed`): the stage re-runs itself under
torchrun. The ok videos are cut into chunks (`chunk_videos`) that encoder batches never cross, and
each rank takes a contiguous run of chunks balanced by frame count, writes its part
(`pipeline.artifacts.shards`), and rank 0 merges the parts into the file one process writes: same
rows, order, feature bytes and metadata (`feature_checksum` included), byte for byte, because every
batch holds the same frames whatever the number of ranks.

Shape notation: N videos, T frames per video, B frames per encoder batch, C = 3 channels,
S_h x S_w model input size, D feature width.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import StreamWriter, numpy_to_fixed_list, read_metadata, read_table
from pipeline.artifacts.shards import (
    RERUN_HINT,
    ColumnChecksum,
    Part,
    PartFile,
    build_in_parts,
    fingerprint,
    iter_rows,
    part_path,
)
from pipeline.artifacts.visual_features import ARTIFACT, ORACLE
from pipeline.config import Params
from pipeline.data.decode import DecodedVideo, DecodeFailure, VideoRequest, iter_decoded
from pipeline.data.synthetic.oracle import ORACLE_DIM, oracle_features
from pipeline.data.synthetic.oracle import feature_names as oracle_feature_names
from pipeline.data.synthetic.records import read_scripts
from pipeline.distributed import RankContext, balanced_ranges, needs_relaunch, rank_context, relaunch
from pipeline.encoders.frame_batches import FrameBatcher, chunk_videos
from pipeline.encoders.visual import VisualEncoder, load_encoder
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger, progress

log = get_logger("visual_features")

# Features buffered before a Parquet row group is written: bounds memory, keeps row groups large.
ROW_GROUP_BYTES = 16 << 20
# The columns `feature_checksum` covers.
FEATURE_COLUMNS = ("features",)
# Sources with a short side above this multiple of the model input side are downscaled at decode.
DECODE_MAX_SCALE = 2
# Decode workers' niceness when they share the CPU with the encoder (see pipeline.data.decode).
CPU_WORKER_NICENESS = 10


def _worker_niceness(encoder: VisualEncoder) -> int:
    return CPU_WORKER_NICENESS if encoder.device.type == "cpu" else 0


# ---------------------------------------------------------------------------------------------
# Manifest


def load_video_requests(manifest: str | Path, num_frames: int) -> list[VideoRequest]:
    """The manifest's `ok` rows as decode requests, checked against `decode.num_frames` (T)."""
    columns = ["video_id", "path", "status", "width", "height", "frame_indices", "timestamps"]
    table = read_table(manifest, schemas.VIDEO_MANIFEST, columns=columns)
    requests: list[VideoRequest] = []
    seen: set[str] = set()
    stale = "The manifest is stale or malformed: re-run `prepare` (`dvc repro prepare`)."
    for row, item in enumerate(table.to_pylist()):
        video_id = item["video_id"]
        where = f"{manifest}: row {row} (video {video_id!r})"
        if video_id in seen:
            raise PipelineError(f"{where}: video_id appears twice in the manifest. {stale}")
        seen.add(video_id)
        if item["status"] != "ok":
            continue
        indices = np.asarray(item["frame_indices"] or [], dtype=np.int64)
        timestamps = np.asarray(item["timestamps"] or [], dtype=np.float64)
        if len(indices) != num_frames or len(timestamps) != num_frames:
            raise PipelineError(
                f"{where}: {len(indices)} frame_indices and {len(timestamps)} timestamps, but decode.num_frames "
                f"is {num_frames}. {stale}"
            )
        if indices.min() < 0 or np.any(np.diff(indices) < 0):
            raise PipelineError(f"{where}: frame_indices must be sorted and >= 0, got {indices.tolist()}. {stale}")
        requests.append(VideoRequest(video_id, item["path"], indices, timestamps, item["width"], item["height"]))
    return requests


# ---------------------------------------------------------------------------------------------
# Writing


def rows_per_group(num_frames: int, dim: int, dtype: str) -> int:
    """Rows of a Parquet row group: ~ROW_GROUP_BYTES of features."""
    return max(1, ROW_GROUP_BYTES // (num_frames * dim * np.dtype(dtype).itemsize))


class _RowBuffer:
    """Collects finished videos and writes them as one record batch (row group) per `rows_per_group`."""

    def __init__(self, writer: StreamWriter, schema: pa.Schema, dtype: str, rows_per_group: int):
        self.writer, self.schema, self.dtype, self.rows_per_group = writer, schema, np.dtype(dtype), rows_per_group
        self.checksum = ColumnChecksum(FEATURE_COLUMNS)
        self._rows: list[tuple[VideoRequest, np.ndarray]] = []

    def add(self, request: VideoRequest, features: np.ndarray) -> None:
        self._rows.append((request, features))
        if len(self._rows) >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        requests = [request for request, _ in self._rows]
        arrays = [
            pa.array([r.video_id for r in requests], pa.string()),
            numpy_to_fixed_list(np.stack([r.frame_indices for r in requests]).astype(np.int64)),  # (n, T)
            numpy_to_fixed_list(np.stack([r.timestamps for r in requests]).astype(np.float64)),  # (n, T)
            numpy_to_fixed_list(np.stack([f for _, f in self._rows]).astype(self.dtype)),  # (n, T, D)
        ]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema.remove_metadata())
        self.writer.write(batch)
        self.checksum.update(batch)
        self._rows.clear()


@dataclass
class ExtractionSummary:
    videos: int  # rows written
    frames: int  # frames encoded
    seconds: float
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"video_id", "path", "status", "reason"}

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def artifact_metadata(
    encoder: VisualEncoder, *, num_frames: int, dtype: str, batch_size: int, chunk_videos: int | None
) -> dict[str, Any]:
    """The metadata of the artifact that depends on the settings, not on the rows."""
    return {
        "artifact": ARTIFACT,
        **encoder.metadata(),
        "dtype": dtype,
        "num_frames": num_frames,
        "decode": {"library": "decord", "resize_at_decode_above_short_side": _max_short_side(encoder)},
        "batching": {"batch_size": batch_size, "chunk_videos": chunk_videos},
    }


def _max_short_side(encoder: VisualEncoder) -> int:
    return DECODE_MAX_SCALE * max(encoder.spec.image_size)


def extract_visual_features(
    requests: Sequence[VideoRequest],
    encoder: VisualEncoder,
    output: str | Path,
    *,
    num_frames: int,
    dtype: str = "float32",
    batch_size: int = 64,
    chunk_videos: int | None = None,
    num_workers: int = 1,
    prefetch_videos: int = 8,
    worker_niceness: int | None = None,
    metadata: dict[str, Any] | None = None,
    timeout_s: float | None = None,
    allow_empty: bool = False,
) -> ExtractionSummary:
    """Decode, encode and write the features of `requests` to `output` (atomically).

    Encoder batches stop at the end of every `chunk_videos` requests (None: they run across all).
    Raises `PipelineError` when no video decodes, unless `allow_empty` (a part of a sharded run).
    `worker_niceness` (default: `CPU_WORKER_NICENESS` when the encoder is on the CPU, else 0) lowers
    the decode workers' priority. `timeout_s` abandons a video whose decode takes longer (`timeout`).
    """
    if not requests and not allow_empty:
        raise PipelineError("no video to encode: the manifest has no row with status `ok`")
    schema = schemas.visual_features(num_frames, encoder.dim, pa.from_numpy_dtype(np.dtype(dtype)))
    settings = dict(num_frames=num_frames, dtype=dtype, batch_size=batch_size, chunk_videos=chunk_videos)
    meta = {**artifact_metadata(encoder, **settings), "videos_requested": len(requests), **(metadata or {})}
    skipped: list[dict[str, str]] = []
    start = time.perf_counter()
    batcher = FrameBatcher(batch_size, encoder.dim, encoder.encode)
    decoded: Iterator[DecodedVideo | DecodeFailure] = iter_decoded(
        requests,
        encoder.preprocessor,
        num_workers=num_workers if requests else 0,
        prefetch_videos=prefetch_videos,
        max_short_side=_max_short_side(encoder),
        worker_niceness=_worker_niceness(encoder) if worker_niceness is None else worker_niceness,
        timeout_s=timeout_s,
    )
    with StreamWriter(output, schema, meta) as writer:
        rows = _RowBuffer(writer, schema, dtype, rows_per_group(num_frames, encoder.dim, dtype))
        for position, item in enumerate(progress(decoded, desc="visual features", total=len(requests), unit="video")):
            if chunk_videos and position and position % chunk_videos == 0:
                for request, features in batcher.finish():  # no batch crosses a chunk's end
                    rows.add(request, features)
            if isinstance(item, DecodeFailure):
                request = item.request
                log.warning("skipping video %s (%s): %s", request.video_id, request.path, item.reason)
                skipped.append(
                    {"video_id": request.video_id, "path": request.path, "status": item.status, "reason": item.reason}
                )
                continue
            for request, features in batcher.add(item.request, item.frames):
                rows.add(request, features)
        for request, features in batcher.finish():
            rows.add(request, features)
        rows.flush()
        if writer.rows == 0 and not allow_empty:
            raise _nothing_decoded(len(requests), skipped)
        writer.update_metadata({"videos": writer.rows, "skipped_videos": skipped, **rows.checksum.metadata()})
    seconds = time.perf_counter() - start
    return ExtractionSummary(videos=writer.rows, frames=batcher.frames_encoded, seconds=seconds, skipped=skipped)


def _nothing_decoded(requested: int, skipped: list[dict[str, str]]) -> PipelineError:
    reasons = "; ".join(f"{s['video_id']}: {s['reason']}" for s in skipped[:3])
    return PipelineError(f"none of the {requested} videos could be decoded (e.g. {reasons}); nothing written")


# ---------------------------------------------------------------------------------------------
# Several processes: one part per rank, merged by rank 0


def _video_record(request: VideoRequest) -> dict[str, Any]:
    """What a part's fingerprint records of one video: the manifest row and the file's size and mtime."""
    try:
        stat = os.stat(request.path)
        file = [stat.st_size, stat.st_mtime_ns]
    except OSError:
        file = None
    return {
        "video_id": request.video_id,
        "path": request.path,
        "frame_indices": request.frame_indices.tolist(),
        "timestamps": request.timestamps.tolist(),
        "size": [request.width, request.height],
        "file": file,
    }


@dataclass
class ShardedExtraction:
    """`requests` as one part per rank: contiguous runs of whole chunks (`chunk_videos`), balanced by
    frame count; how a rank writes its part, and how rank 0 merges them. Build with `plan`."""

    requests: Sequence[VideoRequest]
    encoder: VisualEncoder
    output: Path
    meta: dict[str, Any]  # `artifact_metadata`
    decode: dict[str, Any]  # num_workers, prefetch_videos
    parts: list[Part]
    shards: list[list[VideoRequest]]  # each part's videos

    @classmethod
    def plan(
        cls,
        requests: Sequence[VideoRequest],
        encoder: VisualEncoder,
        output: str | Path,
        count: int,
        *,
        num_frames: int,
        dtype: str,
        batch_size: int,
        weights: str,
        **decode: Any,
    ) -> ShardedExtraction:
        """`weights` is the encoder's `weights_digest()`; `decode`: num_workers, prefetch_videos."""
        chunk = chunk_videos(len(requests), num_frames, batch_size)
        meta = artifact_metadata(encoder, num_frames=num_frames, dtype=dtype, batch_size=batch_size, chunk_videos=chunk)
        chunks = [requests[start : start + chunk] for start in range(0, len(requests), chunk)]
        spans = balanced_ranges([sum(len(r.frame_indices) for r in c) for c in chunks], count)
        parts, shards = [], []
        for index, span in enumerate(spans):
            shard = [request for c in chunks[span.start : span.stop] for request in c]
            frames = sum(len(r.frame_indices) for r in shard)
            description = (
                f"videos {shard[0].video_id!r}..{shard[-1].video_id!r}: {len(shard)} videos, {frames} frames"
                if shard
                else "no videos"
            )
            made_from = {"artifact": meta, "weights": weights, "index": index, "count": count}
            made_from["videos"] = [_video_record(r) for r in shard]
            file = PartFile(part_path(output, index, count), fingerprint(made_from))
            parts.append(Part(index, count, description, (file,)))
            shards.append(shard)
        return cls(requests, encoder, Path(output), meta, decode, parts, shards)

    def write_part(self, part: Part) -> None:
        (file,) = part.files
        extract_visual_features(
            self.shards[part.index],
            self.encoder,
            file.path,
            num_frames=self.meta["num_frames"],
            dtype=self.meta["dtype"],
            **self.meta["batching"],
            **self.decode,
            metadata=part.metadata(file),
            allow_empty=True,
        )

    def merge(self) -> int:
        """Write the parts' rows, in order, into `output` exactly as one process writes them (the parts
        must be valid: `require_parts`); returns the row count."""
        paths = [part.files[0].path for part in self.parts]
        skipped = [s for path in paths for s in read_metadata(path)["skipped_videos"]]
        num_frames, dim, dtype = self.meta["num_frames"], self.meta["dim"], self.meta["dtype"]
        schema = schemas.visual_features(num_frames, dim, pa.from_numpy_dtype(np.dtype(dtype)))
        checksum = ColumnChecksum(FEATURE_COLUMNS)
        requested = len(self.requests)
        with StreamWriter(self.output, schema, {**self.meta, "videos_requested": requested}) as writer:
            for table in iter_rows(paths, rows_per_group(num_frames, dim, dtype)):
                writer.write(table)
                checksum.update(table)
            if writer.rows == 0:
                raise _nothing_decoded(requested, skipped)
            writer.update_metadata({"videos": writer.rows, "skipped_videos": skipped, **checksum.metadata()})
        return writer.rows


def extract_sharded(
    requests: Sequence[VideoRequest], encoder: VisualEncoder, output: str | Path, ctx: RankContext, **settings: Any
) -> ExtractionSummary | None:
    """This rank's part of `requests`; rank 0 then merges every part into `output` and returns the summary
    (None on the other ranks). `settings`: those of `ShardedExtraction.plan` but `weights`."""
    start = time.perf_counter()
    weights = encoder.weights_digest()
    ctx.require_same(weights, "the visual encoder's weights")
    sharded = ShardedExtraction.plan(requests, encoder, output, ctx.world_size, weights=weights, **settings)
    rows = build_in_parts(ctx, sharded.parts, output, sharded.write_part, sharded.merge)
    if rows is None:
        return None
    skipped = read_metadata(output)["skipped_videos"]
    return ExtractionSummary(rows, rows * sharded.meta["num_frames"], time.perf_counter() - start, skipped)


# ---------------------------------------------------------------------------------------------
# Stage


def write_oracle_features(params: Params, requests: Sequence[VideoRequest]) -> None:
    """`features.visual.model: oracle`: the synthetic generator's scene state at each sampled frame, in the
    same schema (metadata `model: oracle`, `feature_names`); an upper bound for any visual encoder."""
    if params.data.dataset != "synthetic":
        raise PipelineError(
            f"features.visual.model = {ORACLE!r} needs the synthetic benchmark (data.dataset: synthetic), whose "
            f"generator records the scene; data.dataset is {params.data.dataset!r}. Use an open_clip model instead."
        )
    scripts = read_scripts(params.data.annotation_dir)
    missing = [r.video_id for r in requests if r.video_id not in scripts]
    if missing:
        raise PipelineError(
            f"features.visual.model = {ORACLE!r}: {len(missing)} video(s) have no record in "
            f"{params.data.annotation_dir}/events_<split>.json (e.g. {missing[0]!r}); re-run `generate`"
        )
    num_frames, dim = params.decode.num_frames, ORACLE_DIM
    schema = schemas.visual_features(num_frames, dim, pa.float32())
    meta = {
        "artifact": ARTIFACT,
        "model": ORACLE,
        "pretrained": "n/a",
        "random_init": False,
        "dim": dim,
        "dtype": "float32",
        "num_frames": num_frames,
        "feature_names": oracle_feature_names(),
        "videos_requested": len(requests),
        "skipped_videos": [],
    }
    with StreamWriter(params.paths.visual_features, schema, meta) as writer:
        rows = _RowBuffer(writer, schema, "float32", max(1, ROW_GROUP_BYTES // (num_frames * dim * 4)))
        for request in progress(requests, desc="oracle features", unit="video"):
            rows.add(request, oracle_features(scripts[request.video_id], request.frame_indices))
        rows.flush()
        writer.update_metadata({"videos": writer.rows})
    log.info("wrote %s: oracle scene states of %d videos (%d-d)", params.paths.visual_features, len(requests), dim)


def run(params: Params) -> None:
    visual = params.features.visual
    num_frames = params.decode.num_frames
    if visual.model == ORACLE:  # no encoder to spread over processes: one process writes the scene states
        requests = load_video_requests(params.paths.video_manifest, num_frames)
        if not requests:
            raise PipelineError(f"{params.paths.video_manifest} has no video with status `ok`")
        write_oracle_features(params, requests)
        return
    if needs_relaunch(params.features.launch):  # several processes wanted: run this stage under torchrun
        relaunch("visual-features", params, params.features.launch, RERUN_HINT)
        return
    requests = load_video_requests(params.paths.video_manifest, num_frames)
    if not requests:
        raise PipelineError(
            f"{params.paths.video_manifest} has no video with status `ok`: check data.video_root and the "
            "`error` column of the manifest (`python -m pipeline inspect` shows it)"
        )
    settings = dict(
        num_frames=num_frames,
        dtype=visual.dtype,
        batch_size=visual.batch_size,
        num_workers=visual.num_workers,
        prefetch_videos=visual.prefetch_videos,
        timeout_s=params.decode.timeout_s,
    )
    with rank_context(params.features.device) as ctx:
        encoder = load_encoder(visual.model, visual.pretrained, ctx.device)
        log.info(
            "encoding %d videos x %d frames: batch %d, %d decode worker(s), %d torch thread(s), %d process(es)",
            len(requests),
            num_frames,
            visual.batch_size,
            visual.num_workers,
            torch.get_num_threads(),
            ctx.world_size,
        )
        output = params.paths.visual_features
        if ctx.world_size == 1:
            chunk = chunk_videos(len(requests), num_frames, visual.batch_size)
            summary = extract_visual_features(requests, encoder, output, chunk_videos=chunk, **settings)
        else:
            summary = extract_sharded(requests, encoder, output, ctx, **settings)
    if summary is not None:
        log.info(
            "wrote %s: %d videos, %d frames in %.1f s (%.1f frames/s)%s",
            output,
            summary.videos,
            summary.frames,
            summary.seconds,
            summary.frames_per_second,
            f"; SKIPPED {len(summary.skipped)} that failed to decode (metadata `skipped_videos`)"
            if summary.skipped
            else "",
        )
