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

Shape notation: N videos, T frames per video, B frames per encoder batch, C = 3 channels,
S_h x S_w model input size, D feature width.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import StreamWriter, numpy_to_fixed_list, read_table
from pipeline.artifacts.visual_features import ARTIFACT, ORACLE
from pipeline.config import Params
from pipeline.data.decode import DecodedVideo, DecodeFailure, VideoRequest, iter_decoded
from pipeline.data.synthetic.oracle import ORACLE_DIM, oracle_features
from pipeline.data.synthetic.oracle import feature_names as oracle_feature_names
from pipeline.data.synthetic.records import read_scripts
from pipeline.encoders.visual import VisualEncoder, load_encoder
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger, progress, resolve_device

log = get_logger("visual_features")

# Features buffered before a Parquet row group is written: bounds memory, keeps row groups large.
ROW_GROUP_BYTES = 16 << 20
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
# Cross-video batching


@dataclass
class _PendingVideo:
    key: Any
    frames: Any  # (T, ...) tensor; dropped once every frame is in a batch
    features: np.ndarray  # (T, D) float32, filled batch by batch
    batched: int = 0  # frames handed to the encoder so far


class FrameBatcher:
    """Packs the frames of consecutive videos into encoder batches of exactly `batch_size` frames.

    `add(key, frames)` queues a video's (T, ...) frames, encodes every full batch now possible with
    `encode` ((B, ...) -> (B, D) tensor), and returns the videos whose T features are all done, as
    `(key, (T, D) float32)`, in the order they were added; `finish()` encodes the remainder. At
    most `batch_size` frames plus one video wait here.
    """

    def __init__(self, batch_size: int, dim: int, encode: Callable[[Any], Any]):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.dim = dim
        self.encode = encode
        self.frames_encoded = 0
        self._waiting: deque[_PendingVideo] = deque()  # videos with frames not yet encoded
        self._buffered = 0  # frames waiting

    def add(self, key: Any, frames: Any) -> list[tuple[Any, np.ndarray]]:
        num_frames = len(frames)
        self._waiting.append(_PendingVideo(key, frames, np.empty((num_frames, self.dim), dtype=np.float32)))
        self._buffered += num_frames
        done: list[tuple[Any, np.ndarray]] = []
        while self._buffered >= self.batch_size:
            done += self._encode_batch(self.batch_size)
        return done

    def finish(self) -> list[tuple[Any, np.ndarray]]:
        return self._encode_batch(self._buffered) if self._buffered else []

    def _encode_batch(self, size: int) -> list[tuple[Any, np.ndarray]]:
        pieces, slots, taken = [], [], 0
        for video in self._waiting:
            if taken == size:
                break
            count = min(size - taken, len(video.features) - video.batched)
            if count == 0:
                continue
            pieces.append(video.frames[video.batched : video.batched + count])
            slots.append((video, video.batched, count))
            video.batched += count
            taken += count
            if video.batched == len(video.features):
                video.frames = None  # the batch holds what it needs; free the rest now
        batch = pieces[0] if len(pieces) == 1 else torch.cat(pieces)  # (B, C, S_h, S_w)
        features = self.encode(batch).numpy()  # (B, D)
        offset = 0
        for video, start, count in slots:
            video.features[start : start + count] = features[offset : offset + count]
            offset += count
        self._buffered -= size
        self.frames_encoded += size
        done = []
        while self._waiting and self._waiting[0].batched == len(self._waiting[0].features):
            video = self._waiting.popleft()
            done.append((video.key, video.features))
        return done


# ---------------------------------------------------------------------------------------------
# Writing


class _RowBuffer:
    """Collects finished videos and writes them as one record batch (row group) per `rows_per_group`."""

    def __init__(self, writer: StreamWriter, schema: pa.Schema, dtype: str, rows_per_group: int):
        self.writer, self.schema, self.dtype, self.rows_per_group = writer, schema, np.dtype(dtype), rows_per_group
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
        self.writer.write(pa.RecordBatch.from_arrays(arrays, schema=self.schema.remove_metadata()))
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


def extract_visual_features(
    requests: Sequence[VideoRequest],
    encoder: VisualEncoder,
    output: str | Path,
    *,
    num_frames: int,
    dtype: str = "float32",
    batch_size: int = 64,
    num_workers: int = 1,
    prefetch_videos: int = 8,
    worker_niceness: int | None = None,
    metadata: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> ExtractionSummary:
    """Decode, encode and write the features of `requests` to `output` (atomically).

    Raises `PipelineError` when no video decodes.
    `worker_niceness` (default: `CPU_WORKER_NICENESS` when the encoder is on the CPU, else 0) lowers
    the decode workers' priority. `timeout_s` abandons a video whose decode takes longer (`timeout`).
    """
    if not requests:
        raise PipelineError("no video to encode: the manifest has no row with status `ok`")
    itemsize = np.dtype(dtype).itemsize
    schema = schemas.visual_features(num_frames, encoder.dim, pa.from_numpy_dtype(np.dtype(dtype)))
    max_short_side = DECODE_MAX_SCALE * max(encoder.spec.image_size)
    meta = {
        "artifact": ARTIFACT,
        **encoder.metadata(),
        "dtype": dtype,
        "num_frames": num_frames,
        "decode": {"library": "decord", "resize_at_decode_above_short_side": max_short_side},
        "videos_requested": len(requests),
        **(metadata or {}),
    }
    skipped: list[dict[str, str]] = []
    start = time.perf_counter()
    batcher = FrameBatcher(batch_size, encoder.dim, encoder.encode)
    decoded: Iterator[DecodedVideo | DecodeFailure] = iter_decoded(
        requests,
        encoder.preprocessor,
        num_workers=num_workers,
        prefetch_videos=prefetch_videos,
        max_short_side=max_short_side,
        worker_niceness=_worker_niceness(encoder) if worker_niceness is None else worker_niceness,
        timeout_s=timeout_s,
    )
    with StreamWriter(output, schema, meta) as writer:
        rows = _RowBuffer(writer, schema, dtype, max(1, ROW_GROUP_BYTES // (num_frames * encoder.dim * itemsize)))
        for item in progress(decoded, desc="visual features", total=len(requests), unit="video"):
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
        if writer.rows == 0:
            reasons = "; ".join(f"{s['video_id']}: {s['reason']}" for s in skipped[:3])
            raise PipelineError(
                f"none of the {len(requests)} videos could be decoded (e.g. {reasons}); nothing written"
            )
        writer.update_metadata({"videos": writer.rows, "skipped_videos": skipped})
    seconds = time.perf_counter() - start
    return ExtractionSummary(videos=writer.rows, frames=batcher.frames_encoded, seconds=seconds, skipped=skipped)


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
    requests = load_video_requests(params.paths.video_manifest, num_frames)
    if not requests:
        raise PipelineError(
            f"{params.paths.video_manifest} has no video with status `ok`: check data.video_root and the "
            "`error` column of the manifest (`python -m pipeline inspect` shows it)"
        )
    if visual.model == ORACLE:
        write_oracle_features(params, requests)
        return
    try:
        device = resolve_device(params.features.device)
    except RuntimeError as err:
        raise PipelineError(f"features.device: {err}") from None
    encoder = load_encoder(visual.model, visual.pretrained, device)
    log.info(
        "encoding %d videos x %d frames: batch %d, %d decode worker(s), %d torch thread(s)",
        len(requests),
        num_frames,
        visual.batch_size,
        visual.num_workers,
        torch.get_num_threads(),
    )
    summary = extract_visual_features(
        requests,
        encoder,
        params.paths.visual_features,
        num_frames=num_frames,
        dtype=visual.dtype,
        batch_size=visual.batch_size,
        num_workers=visual.num_workers,
        prefetch_videos=visual.prefetch_videos,
        timeout_s=params.decode.timeout_s,
    )
    log.info(
        "wrote %s: %d videos, %d frames in %.1f s (%.1f frames/s)%s",
        params.paths.visual_features,
        summary.videos,
        summary.frames,
        summary.seconds,
        summary.frames_per_second,
        f"; SKIPPED {len(summary.skipped)} that failed to decode (metadata `skipped_videos`)"
        if summary.skipped
        else "",
    )
