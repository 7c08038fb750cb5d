"""Video probing and frame sampling (frame decoding lives in `pipeline/data/decode.py`).

`probe_video` opens a file with decord and reports whether it is usable, without decoding the
whole video: decord indexes the packets when it opens a file (a file cut short fails there), and the
probe decodes the last frame once, which catches files whose container opens but whose tail does
not decode, and gives the frame size. It never raises for a bad file: every failure becomes a status
(`missing`, `empty`, `corrupt`) with the error text.

`sample_frame_indices` picks the T frames a video is represented by: uniform segment centres, or
the official NExT-GQA `frame2time` timestamps when given.

Shape notation: T sampled frames per video; N frames in the video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts.schemas import VIDEO_STATUSES


@dataclass(frozen=True)
class VideoProbe:
    """What `probe_video` learned about one file. Numbers are None unless `status == "ok"`."""

    status: str  # one of pipeline.artifacts.schemas.VIDEO_STATUSES
    error: str | None = None
    frame_count: int | None = None  # N, as the container reports it (decord follows FFmpeg)
    fps: float | None = None  # average frame rate
    duration: float | None = None  # seconds, N / fps
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        if self.status not in VIDEO_STATUSES:
            raise ValueError(f"unknown video status {self.status!r}; expected one of {VIDEO_STATUSES}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _corrupt(error: BaseException | str) -> VideoProbe:
    if isinstance(error, BaseException):
        # decord's messages carry a C++ source location and a log timestamp; keep the readable tail.
        text = " ".join(str(error).split()) or "(no message)"
        error = f"{type(error).__name__}: {text}"
    return VideoProbe(status="corrupt", error=error)


def probe_video(path: str | Path, check_last_frame: bool = True) -> VideoProbe:
    """Probe one video file; never raises for a bad file.

    `missing`: no such file. `empty`: a zero-byte file. `corrupt`: decord cannot open it, reports
    no frames or no frame rate, or (with `check_last_frame`) cannot decode its last frame; the
    error text says which. A file cut short is `corrupt`: decord reads every packet header when it
    opens a file, so truncation fails the open (a `RuntimeError` when the `moov` index is lost, a
    `decord._ffi.base.DECORDError` when the index survives but the data ends early).
    """
    path = Path(path)
    if not path.exists():
        return VideoProbe(status="missing", error=f"no such file: {path}")
    if not path.is_file():
        return _corrupt(f"not a regular file: {path}")
    try:
        if path.stat().st_size == 0:
            return VideoProbe(status="empty", error=f"zero-byte file: {path}")
    except OSError as err:
        return _corrupt(err)

    from decord import VideoReader, cpu

    reader = None
    try:
        # decord raises RuntimeError, DECORDError (not a RuntimeError subclass), AssertionError (a
        # zero frame count) and IndexError on bad files; a probe must classify all of them.
        reader = VideoReader(str(path), ctx=cpu(0), num_threads=1)
        frame_count = len(reader)
        fps = float(reader.get_avg_fps())
        if frame_count <= 0:
            return _corrupt(f"decord reports {frame_count} frames")
        if not math.isfinite(fps) or fps <= 0:
            return _corrupt(f"decord reports an unusable frame rate ({fps})")
        height = width = None
        if check_last_frame:
            frame = reader[frame_count - 1]  # (H, W, 3)
            height, width = int(frame.shape[0]), int(frame.shape[1])
    except Exception as err:  # noqa: BLE001 - any decoder failure means "corrupt", never a crash
        return _corrupt(err)
    finally:
        del reader  # frees the decoder (and its file handle) now rather than at the next GC
    return VideoProbe(
        status="ok",
        frame_count=frame_count,
        fps=fps,
        duration=frame_count / fps,
        width=width,
        height=height,
    )


def uniform_frame_indices(frame_count: int, num_frames: int) -> np.ndarray:
    """(T,) int64: the frame at the centre of each of T equal segments of [0, N).

    Segment i covers frames [i N / T, (i + 1) N / T); its centre (i + 1/2) N / T falls in frame
    floor((2i + 1) N / 2T), computed in integers so no rounding error moves a boundary. A video
    shorter than T frames repeats frames (still sorted): every one of the T slots stays filled,
    so all videos share the (T, D) feature shape.
    """
    if frame_count < 1:
        raise ValueError(f"frame_count must be >= 1, got {frame_count}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    slots = np.arange(num_frames, dtype=np.int64)
    return ((2 * slots + 1) * frame_count) // (2 * num_frames)


def sample_frame_indices(
    frame_count: int,
    fps: float,
    num_frames: int,
    timestamps: list[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The T frames a video is represented by: `(indices (T,) int64, timestamps (T,) float64 seconds)`.

    Without `timestamps`: uniform segment centres (`uniform_frame_indices`), timestamps index / fps.
    With official `timestamps` (NExT-GQA `frame2time`, T sorted seconds): the frame shown at each
    time, clip(round(t * fps), 0, N - 1), and the official timestamps are kept unchanged, so
    grounding spans are in the same seconds as published results. Their count must equal T (the
    caller falls back to uniform sampling, with a warning, when it does not).
    """
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    if timestamps is None:
        indices = uniform_frame_indices(frame_count, num_frames)
        return indices, indices.astype(np.float64) / fps
    times = np.asarray(timestamps, dtype=np.float64)
    if times.shape != (num_frames,):
        raise ValueError(f"expected {num_frames} timestamps, got an array of shape {times.shape}")
    if frame_count < 1:
        raise ValueError(f"frame_count must be >= 1, got {frame_count}")
    if np.any(np.diff(times) < 0):
        raise ValueError("official timestamps must be sorted")
    indices = np.clip(np.rint(times * fps), 0, frame_count - 1).astype(np.int64)
    return indices, times
