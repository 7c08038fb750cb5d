"""Video probing on real tiny mp4 files (ok, missing, empty, truncated, garbage) and frame sampling."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.video import VideoProbe, probe_video, sample_frame_indices, uniform_frame_indices


def write_video(path: Path, num_frames: int = 40, fps: float = 10.0, width: int = 64, height: int = 48) -> Path:
    """A real mp4 (MPEG-4 part 2) whose frame i is a flat grey of level 6 i."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(num_frames):
        writer.write(np.full((height, width, 3), (6 * i) % 256, np.uint8))
    writer.release()
    return path


_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def _boxes(data: bytes | bytearray, start: int, end: int):
    while start < end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        yield kind, start, size
        start += size


def _shift_chunk_offsets(moov: bytearray, start: int, end: int, shift: int) -> None:
    for kind, at, size in _boxes(moov, start, end):
        if kind in _CONTAINER_BOXES:
            _shift_chunk_offsets(moov, at + 8, at + size, shift)
        elif kind in (b"stco", b"co64"):
            width = 4 if kind == b"stco" else 8
            fmt = ">I" if kind == b"stco" else ">Q"
            (count,) = struct.unpack(">I", moov[at + 12 : at + 16])
            for k in range(count):
                pos = at + 16 + width * k
                moov[pos : pos + width] = struct.pack(fmt, struct.unpack(fmt, moov[pos : pos + width])[0] + shift)


def faststart(data: bytes) -> bytes:
    """Move the `moov` index before `mdat` (what `ffmpeg -movflags faststart` does for web video).

    OpenCV writes the index last, so cutting its file loses the index; a faststart file cut short
    keeps the index and loses frame data instead: the other way real downloads end up truncated.
    """
    top = {kind: (at, size) for kind, at, size in _boxes(data, 0, len(data))}
    (moov_at, moov_size), (mdat_at, _) = top[b"moov"], top[b"mdat"]
    assert moov_at > mdat_at
    moov = bytearray(data[moov_at : moov_at + moov_size])
    _shift_chunk_offsets(moov, 8, moov_size, moov_size)
    return data[:mdat_at] + bytes(moov) + data[mdat_at:moov_at] + data[moov_at + moov_size :]


@pytest.fixture(scope="module")
def ok_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "ok.mp4")


def test_probe_ok_video(ok_video: Path):
    probe = probe_video(ok_video)
    expected = VideoProbe(status="ok", frame_count=40, fps=10.0, duration=4.0, width=64, height=48, vfr=False)
    assert probe == expected and probe.ok
    # Constant frame rate: pts are k / fps (decord's float32 ones are not kept), times computed exactly.
    assert probe.pts is None
    np.testing.assert_array_equal(probe.frame_times(), np.arange(40) / 10.0)


def test_probe_missing_and_empty(tmp_path: Path):
    missing = probe_video(tmp_path / "nope.mp4")
    assert missing.status == "missing" and "nope.mp4" in missing.error
    assert missing.frame_count is None and not missing.ok

    (tmp_path / "zero.mp4").write_bytes(b"")
    empty = probe_video(tmp_path / "zero.mp4")
    assert empty.status == "empty" and "zero-byte" in empty.error


def test_probe_truncated_without_index_is_corrupt(ok_video: Path, tmp_path: Path):
    data = ok_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    probe = probe_video(cut)
    # decord raises a plain RuntimeError ("Error reading ..."); the error keeps what FFmpeg said instead.
    assert probe.status == "corrupt"
    assert probe.error == "moov atom not found; Invalid data found when processing input"
    assert probe.frame_count is None and probe.width is None


def test_probe_truncated_with_index_is_corrupt(ok_video: Path, tmp_path: Path):
    data = faststart(ok_video.read_bytes())
    whole = tmp_path / "faststart.mp4"
    whole.write_bytes(data)
    # The rewritten file is a valid video: only the truncation below makes it corrupt.
    assert probe_video(whole) == probe_video(ok_video)

    # Keep the whole index and the first 30% of the frame data.
    mdat_at, mdat_size = next((at, size) for kind, at, size in _boxes(data, 0, len(data)) if kind == b"mdat")
    cut = tmp_path / "faststart_cut.mp4"
    cut.write_bytes(data[: mdat_at + int(mdat_size * 0.3)])
    probe = probe_video(cut)
    # The index survives, so decord's packet scan fails instead (DECORDError "av_read_frame failed");
    # FFmpeg's own reason names the stream, the offset and the problem.
    assert probe.status == "corrupt"
    assert re.fullmatch(r"stream 0, offset 0x[0-9a-f]+: partial file", probe.error), probe.error


def test_probe_garbage_and_directory_are_corrupt(tmp_path: Path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert probe_video(garbage).status == "corrupt"

    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    probe = probe_video(folder)
    assert probe.status == "corrupt" and "not a regular file" in probe.error


def test_probe_status_is_checked():
    with pytest.raises(ValueError, match="unknown video status"):
        VideoProbe(status="fine")


def test_uniform_indices_golden():
    # Centres of 4 segments of 100 frames: 12.5, 37.5, 62.5, 87.5 -> the frames containing them.
    np.testing.assert_array_equal(uniform_frame_indices(100, 4), [12, 37, 62, 87])
    # Centres 1.67, 5, 8.33 of 3 segments of 10 frames; the exact centre 5.0 lies in frame 5.
    np.testing.assert_array_equal(uniform_frame_indices(10, 3), [1, 5, 8])
    # T == N picks every frame once.
    np.testing.assert_array_equal(uniform_frame_indices(7, 7), np.arange(7))


def test_sample_uniform_with_timestamps():
    indices, times = sample_frame_indices(frame_count=100, fps=25.0, num_frames=4)
    assert indices.dtype == np.int64 and times.dtype == np.float64
    np.testing.assert_array_equal(indices, [12, 37, 62, 87])
    np.testing.assert_allclose(times, [0.48, 1.48, 2.48, 3.48])


def test_sample_short_video_repeats_sorted_frames():
    indices, times = sample_frame_indices(frame_count=3, fps=3.0, num_frames=8)
    # Centres (i + 0.5) * 3 / 8 = 0.19, 0.56, 0.94, 1.31, 1.69, 2.06, 2.44, 2.81.
    np.testing.assert_array_equal(indices, [0, 0, 0, 1, 1, 2, 2, 2])
    np.testing.assert_allclose(times, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])


def test_sample_at_official_frame2time():
    official = [0.0, 1.2, 2.5, 3.34, 10.0]
    indices, times = sample_frame_indices(frame_count=100, fps=29.97, num_frames=5, timestamps=official)
    # The frame shown at t, floor(t * fps): 0, 35.96 -> 35, 74.93 -> 74, 100.10 -> 100 and 299.7, both
    # past the end -> 99.
    np.testing.assert_array_equal(indices, [0, 35, 74, 99, 99])
    np.testing.assert_array_equal(times, official)  # the official seconds, unchanged


def test_sample_rejects_bad_inputs():
    with pytest.raises(ValueError, match="expected 4 timestamps"):
        sample_frame_indices(100, 10.0, 4, timestamps=[0.0, 1.0])
    with pytest.raises(ValueError, match="sorted"):
        sample_frame_indices(100, 10.0, 2, timestamps=[2.0, 1.0])
    with pytest.raises(ValueError, match="fps"):
        sample_frame_indices(100, 0.0, 4)
    with pytest.raises(ValueError, match="frame_count"):
        sample_frame_indices(0, 10.0, 4)
