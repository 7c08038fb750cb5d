"""Video probing, container lookup and frame sampling (frame decoding lives in `pipeline/data/decode.py`).

`probe_video` opens a file with decord and reports whether it is usable, without decoding the
whole video: decord indexes the packets when it opens a file (a file cut short fails there), and the
probe decodes the last frame once, which catches files whose container opens but whose tail does
not decode, and gives the frame size. It never raises for a bad file: every failure becomes a status
(`missing`, `empty`, `corrupt`) with FFmpeg's own reason (its messages are captured, never printed).
`Prober` runs it in a child process that is killed when a probe takes longer than `decode.timeout_s`
(status `timeout`).

Time is the frames' presentation timestamps (pts), as FFmpeg reports them: frame k is shown from
pts[k] until pts[k + 1]. A constant-frame-rate file has pts[k] = k / fps (within `PTS_TOLERANCE_S`;
decord stores them as float32); its pts are not kept (`VideoProbe.pts` is None) and every time is
computed from k / fps exactly, as before this module knew about pts. Any other file (variable frame
rate, or a start offset) keeps its pts, and sampling uses them.

`sample_frame_indices` picks the T frames a video is represented by, each the frame shown at a
target time: uniform in time (segment centres of [first pts, end)), or the official NExT-GQA
`frame2time` times when given.

Shape notation: T sampled frames per video; N frames in the video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.artifacts.schemas import VIDEO_STATUSES
from pipeline.data.isolation import CallTimeout, IsolatedWorker, WorkerCrashed, captured_stderr, ffmpeg_reason
from pipeline.errors import PipelineError

# The file a dataset names `<path>.mp4` may be stored in another container (the first that exists wins;
# two of the others without the .mp4 is ambiguous).
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
# pts within this of k / fps count as a constant frame rate (mkv rounds pts to 1 ms; decord keeps float32).
PTS_TOLERANCE_S = 0.002
# A time t is "at or after" a pts p when t >= p - TIME_EPS_S (float32 pts of a frame at 0.3 s read 0.30000001).
TIME_EPS_S = 1e-4
# Official times are given to 0.1 s: a time up to half that past the end is rounding, not a mismatch.
PAST_END_SLACK_S = 0.05


class AmbiguousVideoError(PipelineError):
    """A video exists in several containers and none is the `.mp4` the annotation names."""


@dataclass(frozen=True)
class VideoProbe:
    """What `probe_video` learned about one file. Numbers are None unless the file could be read."""

    status: str  # one of pipeline.artifacts.schemas.VIDEO_STATUSES
    error: str | None = None
    frame_count: int | None = None  # N, as the container reports it (decord follows FFmpeg)
    fps: float | None = None  # average frame rate
    duration: float | None = None  # seconds: N / fps at a constant frame rate, else the end of the last frame
    width: int | None = None
    height: int | None = None
    vfr: bool | None = None  # frame durations vary (by more than PTS_TOLERANCE_S)
    # (N,) float64 seconds, sorted; None when pts[k] = k / fps (constant frame rate from 0).
    pts: np.ndarray | None = field(default=None, compare=False, repr=False)
    note: str | None = None  # a usable file's oddity worth a warning (e.g. unusable pts)

    def __post_init__(self) -> None:
        if self.status not in VIDEO_STATUSES:
            raise ValueError(f"unknown video status {self.status!r}; expected one of {VIDEO_STATUSES}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def frame_times(self) -> np.ndarray:
        """(N,) float64: when each frame starts being shown."""
        if self.frame_count is None or self.fps is None:
            raise ValueError(f"a {self.status} video has no frames")
        return self.pts if self.pts is not None else np.arange(self.frame_count, dtype=np.float64) / self.fps


def _exception_text(error: BaseException) -> str:
    # decord's messages carry a C++ source location and a log timestamp; keep the readable tail.
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text}"


def frame_clock(starts: np.ndarray, last_end: float, fps: float) -> tuple[np.ndarray | None, bool, float, str | None]:
    """`(pts or None, vfr, duration, note)` from decord's per-frame start times and the last frame's end.

    pts is None when every start is within `PTS_TOLERANCE_S` of k / fps (then duration = N / fps).
    Starts that do not increase cannot be used: the nominal k / fps is used, with a note.
    """
    count = len(starts)
    starts = np.asarray(starts, dtype=np.float64)
    tolerance = min(PTS_TOLERANCE_S, 0.25 / fps)
    if np.all(np.abs(starts - np.arange(count) / fps) <= tolerance):
        return None, False, count / fps, None
    intervals = np.diff(starts)
    if count > 1 and np.any(intervals <= 0):
        return None, False, count / fps, "presentation timestamps do not increase: frame times are index / fps"
    vfr = bool(count > 2 and np.max(np.abs(intervals - np.median(intervals))) > tolerance)
    step = float(np.median(intervals)) if count > 1 else 1.0 / fps
    duration = float(last_end) if last_end > starts[-1] else float(starts[-1]) + step
    return starts, vfr, duration, None


def probe_video(path: str | Path, check_last_frame: bool = True) -> VideoProbe:
    """Probe one video file; never raises for a bad file.

    `missing`: no such file. `empty`: a zero-byte file. `corrupt`: decord cannot open it, reports
    no frames or no frame rate, or (with `check_last_frame`) cannot decode its last frame; the
    error is FFmpeg's own message when it printed one (e.g. "moov atom not found; Invalid data found
    when processing input" for a file cut before its index, "stream 0, offset 0x63d: partial file"
    for one whose index survives but whose data ends early), else decord's exception.
    """
    path = Path(path)
    if not path.exists():
        return VideoProbe(status="missing", error=f"no such file: {path}")
    if not path.is_file():
        return VideoProbe(status="corrupt", error=f"not a regular file: {path}")
    try:
        if path.stat().st_size == 0:
            return VideoProbe(status="empty", error=f"zero-byte file: {path}")
    except OSError as err:
        return VideoProbe(status="corrupt", error=_exception_text(err))

    from decord import VideoReader, cpu

    with captured_stderr() as captured:
        reader = None
        try:
            # decord raises RuntimeError, DECORDError (not a RuntimeError subclass), AssertionError (a
            # zero frame count) and IndexError on bad files; a probe must classify all of them.
            reader = VideoReader(str(path), ctx=cpu(0), num_threads=1)
            frame_count = len(reader)
            fps = float(reader.get_avg_fps())
            failure = None
            if frame_count <= 0:
                failure = f"decord reports {frame_count} frames"
            elif not math.isfinite(fps) or fps <= 0:
                failure = f"decord reports an unusable frame rate ({fps})"
            else:
                times = reader.get_frame_timestamp(np.arange(frame_count))  # (N, 2) [start, end] seconds
                height = width = None
                if check_last_frame:
                    frame = reader[frame_count - 1]  # (H, W, 3)
                    height, width = int(frame.shape[0]), int(frame.shape[1])
        except Exception as err:  # noqa: BLE001 - any decoder failure means "corrupt", never a crash
            failure = err
        finally:
            del reader  # frees the decoder (and its file handle) now rather than at the next GC
    if failure is not None:
        reason = ffmpeg_reason(captured.text) if isinstance(failure, BaseException) else None
        text = failure if isinstance(failure, str) else _exception_text(failure)
        return VideoProbe(status="corrupt", error=reason or text)
    pts, vfr, duration, note = frame_clock(times[:, 0], float(times[-1, 1]), fps)
    return VideoProbe(
        status="ok",
        frame_count=frame_count,
        fps=fps,
        duration=duration,
        width=width,
        height=height,
        vfr=vfr,
        pts=pts,
        note=note,
    )


def find_video_file(path: str | Path) -> Path:
    """The file a dataset names `<stem>.mp4`: that file if it exists, else the one `<stem>.<ext>` that does.

    `<ext>` is one of `VIDEO_EXTENSIONS` (lower case, as listed). Returns `path` unchanged when none
    exists (the probe then reports it `missing`); raises `AmbiguousVideoError` when several do.
    """
    path = Path(path)
    if path.exists() or path.suffix != ".mp4":
        return path
    stem = path.with_suffix("")
    found = [candidate for ext in VIDEO_EXTENSIONS[1:] if (candidate := stem.with_name(stem.name + ext)).exists()]
    if len(found) > 1:
        raise AmbiguousVideoError(
            f"{path} does not exist and {len(found)} files could be it: {', '.join(p.name for p in found)} "
            f"(in {path.parent}); keep one of them, or convert one to {path.name}"
        )
    return found[0] if found else path


class Prober:
    """Probes files in an `IsolatedWorker`, abandoning any probe that takes over `timeout_s` seconds.

        with Prober(timeout_s=120) as prober:
            probe = prober(path)      # a VideoProbe; status `timeout` when abandoned

    `probe` is the function run in the child (picklable by reference; tests pass stand-ins).
    A probe that crashes the child (a signal in FFmpeg) is `corrupt`, with the signal named.
    """

    def __init__(self, timeout_s: float | None, probe=probe_video):
        self.timeout_s = timeout_s
        self.probe = probe
        self._worker = IsolatedWorker(timeout_s)

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, *exc: object) -> None:
        self._worker.close()

    def __call__(self, path: str | Path) -> VideoProbe:
        try:
            return self._worker.call(self.probe, str(path))
        except CallTimeout:
            return VideoProbe(
                status="timeout",
                error=f"the probe did not return within decode.timeout_s={self.timeout_s:g} s and was abandoned "
                "(a malformed file or a stalled disk); raise decode.timeout_s if the file is just slow to open",
            )
        except (WorkerCrashed, RuntimeError) as err:
            return VideoProbe(status="corrupt", error=str(err))


def uniform_frame_indices(frame_count: int, num_frames: int) -> np.ndarray:
    """(T,) int64: the frame at the centre of each of T equal segments of [0, N) (constant frame rate).

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


def shown_frames(times: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(T,) int64: for each time, the frame shown then: the last frame with pts <= t (frame 0 before it)."""
    indices = np.searchsorted(pts, np.asarray(times, dtype=np.float64) + TIME_EPS_S, side="right") - 1
    return np.clip(indices, 0, len(pts) - 1).astype(np.int64)


def times_past_end(times: list[float] | np.ndarray, duration: float) -> int:
    """How many of `times` lie after the video's end (beyond `PAST_END_SLACK_S` of rounding)."""
    return int(np.count_nonzero(np.asarray(times, dtype=np.float64) > duration + PAST_END_SLACK_S))


def sample_frame_indices(
    frame_count: int,
    fps: float,
    num_frames: int,
    timestamps: list[float] | np.ndarray | None = None,
    pts: np.ndarray | None = None,
    duration: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The T frames a video is represented by: `(indices (T,) int64, timestamps (T,) float64 seconds)`.

    `pts` (N,) are the frames' presentation times (None: frame k at k / fps) and `duration` the end of
    the last frame (needed with `pts`).

    Without `timestamps`: uniform in time. At a constant frame rate (`pts` None) these are the segment
    centres `uniform_frame_indices`, timestamps index / fps. Otherwise the frame shown at each centre
    of T equal segments of [pts[0], duration), timestamps its pts.
    With official `timestamps` (NExT-GQA `frame2time`, T sorted seconds): the frame shown at each
    time (the last with pts <= t; times past the end clamp to the last frame, which the caller
    counts), and the official timestamps are kept unchanged, so grounding spans are in the same
    seconds as published results. Their count must equal T (the caller falls back to uniform
    sampling, with a warning, when it does not).
    """
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    if frame_count < 1:
        raise ValueError(f"frame_count must be >= 1, got {frame_count}")
    if pts is not None:
        pts = np.asarray(pts, dtype=np.float64)
        if pts.shape != (frame_count,):
            raise ValueError(f"expected {frame_count} pts, got an array of shape {pts.shape}")
        if duration is None:
            raise ValueError("duration is needed with pts")
    if timestamps is None:
        if pts is None:
            indices = uniform_frame_indices(frame_count, num_frames)
            return indices, indices.astype(np.float64) / fps
        slots = np.arange(num_frames, dtype=np.float64)
        targets = pts[0] + (2 * slots + 1) / (2 * num_frames) * (duration - pts[0])
        indices = shown_frames(targets, pts)
        return indices, pts[indices]
    times = np.asarray(timestamps, dtype=np.float64)
    if times.shape != (num_frames,):
        raise ValueError(f"expected {num_frames} timestamps, got an array of shape {times.shape}")
    if np.any(np.diff(times) < 0):
        raise ValueError("official timestamps must be sorted")
    clock = pts if pts is not None else np.arange(frame_count, dtype=np.float64) / fps
    return shown_frames(times, clock), times
