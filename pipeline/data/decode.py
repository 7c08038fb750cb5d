"""Decoding the sampled frames of many videos with decord, prefetched in background workers.

`read_frames` decodes one video's sampled frames in ONE `VideoReader.get_batch` call on the sorted,
de-duplicated indices (a video shorter than T frames repeats indices; each distinct frame is
decoded once). `iter_decoded` runs that, plus a per-video transform (the encoder's resize and
crop), in `torch.utils.data.DataLoader` worker processes, so decoding overlaps with encoding in the
main process; at most `prefetch_videos` decoded videos wait in the queue, whatever the dataset
size. A video that fails to decode yields a `DecodeFailure` (with FFmpeg's own reason, its messages
captured per video so they never interleave with progress bars) instead of stopping the run: decord
raises `RuntimeError`, `decord._ffi.base.DECORDError` (not a RuntimeError subclass) and others on
bad files. A video whose decode has not returned after `timeout_s` seconds is abandoned: its
worker is killed, the video yields a `DecodeFailure` with status `timeout`, and decoding resumes
with the next video in fresh workers.

Resizing at decode: a source much larger than the model input (short side over
`max_short_side`, which the stage sets to twice the model's input side) is scaled down by FFmpeg
while decoding, to that short side with the aspect ratio kept. It bounds the memory of a queued
video (T full-HD frames are 200 MB; at 448 px they are 25 MB) and the cost of the final
antialiased resize, which still makes the exact model input from a frame at least twice as large.

Shape notation: T sampled frames of a video, U <= T distinct frames, H x W decoded frame size,
C = 3 (RGB) channels.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.data.isolation import captured_stderr, ffmpeg_reason
from pipeline.errors import PipelineError

# Everything decord (or the OS under it) raises for a file it cannot read. DECORDError is no
# RuntimeError subclass; AssertionError and IndexError come from malformed containers.
_DECORD_FAILURES: tuple[type[BaseException], ...] = (RuntimeError, OSError, AssertionError, IndexError, ValueError)


def _decord_failures() -> tuple[type[BaseException], ...]:
    from decord._ffi.base import DECORDError

    return (DECORDError, *_DECORD_FAILURES)


class DecodeError(Exception):
    """One video could not be decoded; the message says why (the stage records it and moves on)."""


@dataclass(frozen=True)
class VideoRequest:
    """One manifest row to decode: which file, which frames, and the size the manifest probed."""

    video_id: str
    path: str
    frame_indices: np.ndarray  # (T,) int64, sorted
    timestamps: np.ndarray  # (T,) float64 seconds
    width: int | None = None
    height: int | None = None


@dataclass
class DecodedVideo:
    """A decoded video after the per-video transform (for the encoder: uint8 (T, C, S_h, S_w))."""

    request: VideoRequest
    frames: Any  # whatever the transform returned, T frames along the first axis


@dataclass
class DecodeFailure:
    request: VideoRequest
    reason: str
    status: str = "corrupt"  # or "timeout" (pipeline.artifacts.schemas.VIDEO_STATUSES)


def decode_resolution(width: int | None, height: int | None, max_short_side: int | None) -> tuple[int, int] | None:
    """(width, height) to ask decord for, or None to decode at the source size.

    Downscales only when the short side exceeds `max_short_side`; keeps the aspect ratio and rounds
    to even sizes (FFmpeg's scaler and 4:2:0 chroma want them).
    """
    if not max_short_side or not width or not height or min(width, height) <= max_short_side:
        return None
    scale = max_short_side / min(width, height)
    even = lambda size: max(2, int(round(size * scale / 2)) * 2)  # noqa: E731
    return even(width), even(height)


def read_frames(
    path: str,
    unique_indices: np.ndarray,
    size: tuple[int, int] | None = None,
    num_threads: int = 1,
) -> np.ndarray:
    """Decode the frames at `unique_indices` (sorted, distinct) in one batch: uint8 (U, H, W, C) RGB.

    `size` = (width, height) makes FFmpeg scale while decoding. Raises `DecodeError` for a file
    decord cannot read (with FFmpeg's reason when it gave one) or indices beyond its last frame.
    """
    from decord import VideoReader, cpu

    failures = _decord_failures()
    reader = None
    with captured_stderr() as captured:
        try:
            if size is None:
                reader = VideoReader(path, ctx=cpu(0), num_threads=num_threads)
            else:
                reader = VideoReader(path, ctx=cpu(0), width=size[0], height=size[1], num_threads=num_threads)
            frame_count = len(reader)
            if len(unique_indices) and int(unique_indices[-1]) >= frame_count:
                raise DecodeError(
                    f"frame index {int(unique_indices[-1])} is beyond the {frame_count} frames decord finds in "
                    f"{path} (the file changed since `prepare` probed it? re-run prepare)"
                )
            frames = reader.get_batch(unique_indices.tolist()).asnumpy()  # (U, H, W, C)
            failure = None
        except failures as err:
            failure = err
        finally:
            reader = None  # frees the decoder and its file handle now, not at the next GC
    if failure is not None:
        text = " ".join(str(failure).split()) or "(no message)"
        raise DecodeError(ffmpeg_reason(captured.text) or f"{type(failure).__name__}: {text}")
    return frames


def decode_frames(request: VideoRequest, size: tuple[int, int] | None = None, num_threads: int = 1) -> np.ndarray:
    """All T sampled frames of one video, repeats included: uint8 (T, H, W, C)."""
    unique, inverse = np.unique(request.frame_indices, return_inverse=True)
    return read_frames(request.path, unique, size, num_threads)[inverse]


class _DecodeDataset:
    """Map-style dataset over requests: decode, transform the distinct frames, then expand to T."""

    def __init__(
        self,
        requests: Sequence[VideoRequest],
        transform: Callable[[np.ndarray], Any],
        max_short_side: int | None,
        decode_threads: int,
        reader: Callable[..., np.ndarray] = read_frames,
    ):
        self.requests = requests
        self.transform = transform
        self.max_short_side = max_short_side
        self.decode_threads = decode_threads
        self.reader = reader

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, index: int) -> DecodedVideo | DecodeFailure:
        request = self.requests[index]
        unique, inverse = np.unique(request.frame_indices, return_inverse=True)
        size = decode_resolution(request.width, request.height, self.max_short_side)
        try:
            frames = self.reader(request.path, unique, size, self.decode_threads)  # (U, H, W, C)
        except DecodeError as err:
            return DecodeFailure(request, str(err))
        transformed = self.transform(frames)  # (U, ...)
        if len(unique) != len(inverse):
            transformed = transformed[inverse]  # (T, ...)
        return DecodedVideo(request, transformed)


def _one_item(item: Any) -> Any:
    """DataLoader collate for batch_size=None: pass items through unchanged (module-level: picklable)."""
    return item


@dataclass(frozen=True)
class _WorkerSetup:
    """Runs in each decode worker at start (a picklable callable, for any start method)."""

    niceness: int = 0

    def __call__(self, worker_id: int) -> None:
        import torch

        # Decode workers are light: one torch thread each (DataLoader's default too).
        torch.set_num_threads(1)
        if self.niceness > 0 and hasattr(os, "nice"):
            # When the encoder shares these cores, a lower priority keeps a worker from pre-empting
            # one of its OpenMP threads (every thread then waits at the barrier); a worker still runs
            # whenever a core idles, and the prefetch queue absorbs the delay.
            os.nice(self.niceness)


def iter_decoded(
    requests: Sequence[VideoRequest],
    transform: Callable[[np.ndarray], Any],
    num_workers: int = 1,
    prefetch_videos: int = 8,
    max_short_side: int | None = None,
    worker_niceness: int = 0,
    timeout_s: float | None = None,
    reader: Callable[..., np.ndarray] = read_frames,
) -> Iterator[DecodedVideo | DecodeFailure]:
    """Decode and transform every request, in order, `prefetch_videos` ahead in worker processes.

    `transform` maps uint8 (U, H, W, C) frames to anything indexable along its first axis (the
    encoder's uint8 (U, C, S_h, S_w) tensor: torch tensors cross processes through shared memory).
    `num_workers=0` decodes in this process, without overlap and without a time limit (for
    debugging). `worker_niceness` > 0 lowers the workers' CPU priority (for a CPU encoder in this
    process). `timeout_s`: the longest wait for the next video (its decode and transform) before it is
    abandoned as `timeout` (None: no limit). `reader` decodes one file (tests pass stand-ins).
    """
    _decord_failures()  # import decord here, once: forked workers inherit it instead of each importing it
    dataset = _DecodeDataset(requests, transform, max_short_side, decode_threads=1, reader=reader)
    if num_workers == 0:
        yield from (dataset[i] for i in range(len(dataset)))
        return
    start = 0
    while start < len(requests):
        # Items come in order: a wait that times out is for requests[start + delivered]. The loader
        # (and its hung worker) is dropped and a fresh one resumes after the abandoned video.
        outcome: list[int] = []
        yield from _decode_from(
            requests, start, dataset, num_workers, prefetch_videos, worker_niceness, timeout_s, outcome
        )
        if not outcome:
            return
        stuck = start + outcome[0]
        request = requests[stuck]
        yield DecodeFailure(
            request,
            f"decoding did not finish within decode.timeout_s={timeout_s:g} s and was abandoned (its worker was "
            "killed); raise decode.timeout_s if the file is just slow to decode",
            status="timeout",
        )
        start = stuck + 1


class _Subset:
    """requests[start:] of a `_DecodeDataset`, as a map-style dataset (module-level: picklable)."""

    def __init__(self, dataset: _DecodeDataset, start: int):
        self.dataset, self.start = dataset, start

    def __len__(self) -> int:
        return len(self.dataset) - self.start

    def __getitem__(self, index: int) -> DecodedVideo | DecodeFailure:
        return self.dataset[self.start + index]


def _decode_from(
    requests: Sequence[VideoRequest],
    start: int,
    dataset: _DecodeDataset,
    num_workers: int,
    prefetch_videos: int,
    worker_niceness: int,
    timeout_s: float | None,
    timed_out: list[int],
) -> Iterator[DecodedVideo | DecodeFailure]:
    """Yield the items of requests[start:]; on a timeout, append how many were delivered to `timed_out` and stop."""
    from torch.utils.data import DataLoader

    remaining = len(requests) - start
    workers = min(num_workers, max(1, remaining))
    loader = DataLoader(
        _Subset(dataset, start),  # type: ignore[arg-type]  # a map-style dataset needs only __len__ and __getitem__
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_one_item,
        # The queue holds prefetch_factor items per worker: prefetch_videos in all.
        prefetch_factor=max(1, -(-prefetch_videos // workers)),
        worker_init_fn=_WorkerSetup(worker_niceness),
        # fork: workers start in milliseconds with torch, decord and the transform already imported.
        multiprocessing_context="fork" if "fork" in multiprocessing.get_all_start_methods() else None,
        timeout=timeout_s or 0,
    )
    delivered = 0
    iterator = iter(loader)
    try:
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except RuntimeError as err:
                if timeout_s and "timed out" in str(err):
                    timed_out.append(delivered)
                    return
                if "DataLoader worker" not in str(err):
                    raise
                # A file can crash FFmpeg itself (a signal, not an exception); items come in order, so the
                # culprit is the first undelivered video or one of the next `prefetch_videos`.
                pending = requests[start + delivered]
                raise PipelineError(
                    f"a decode worker died ({' '.join(str(err).split())}) at or shortly after video "
                    f"{pending.video_id!r} ({pending.path}), after {start + delivered} of {len(requests)} videos. "
                    "Check that file and the ones after it in the manifest (a corrupt file can crash the decoder); "
                    "re-run `prepare` or remove it."
                ) from None
            yield item
            delivered += 1
    finally:
        del iterator  # shuts the workers down (a hung one is terminated after torch's 5 s grace)
