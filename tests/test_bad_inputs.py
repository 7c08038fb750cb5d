"""One test per class of bad input (issue 9): each builds its broken input, asserts the clear error or the
recorded skip / repair, and that the good items still went through.

Videos are made here with OpenCV (constant frame rate) or PyAV (explicit presentation timestamps:
variable frame rate); annotation folders in NExT-GQA's format (tests/test_datasets.py helpers).
"""

from __future__ import annotations

import codecs
import dataclasses
import fractions
import functools
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from pipeline.artifacts.parquet import StreamWriter, read_metadata, read_table, write_table
from pipeline.artifacts.schemas import QA, VIDEO_MANIFEST
from pipeline.cli import app
from pipeline.config import ConfigError, DecodeConfig, load_params
from pipeline.data.datasets import AnnotationError, load_dataset
from pipeline.data.decode import DecodedVideo, DecodeFailure, VideoRequest, iter_decoded, read_frames
from pipeline.data.video import AmbiguousVideoError, Prober, probe_video, uniform_frame_indices
from pipeline.errors import PipelineError
from pipeline.runtime import remove_stale_temps
from stages import prepare
from tests import standins
from tests.conftest import REPO_ROOT
from tests.test_datasets import STAR_FIXTURE, _prepare_params, nextgqa_config, star_config, write_split
from tests.test_video_probe import write_video

# ---------------------------------------------------------------------------------------------
# Helpers


def write_vfr_video(path: Path, pts: list[float], width: int = 64, height: int = 48) -> Path:
    """An mp4 whose frame i is shown from pts[i] seconds (1 ms time base) and is a flat grey of level 2 i."""
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    ms = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = ms
        stream.codec_context.options = {"qscale": "2"}
        for i, t in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), (2 * i) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), ms
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# The example: 300 frames over 30 s, the first half dense (30 fps for 5 s, then 6 fps for 25 s).
VFR_PTS = [i / 30 for i in range(150)] + [5 + i / 6 for i in range(150)]


def nextgqa_folder(
    root: Path, videos: dict[str, str], gsub: dict | None = None, frame2time: dict | None = None
) -> Path:
    """NExT-GQA-format annotations: one val question per video (map entry `videos[video_id]`), and a
    test split whose one question is on video `good`."""
    rows = [{"video_id": v, "qid": "0", "answer": "run"} for v in videos]
    write_split(root, "val", rows, gsub=gsub or {}, frame2time=frame2time)
    write_split(root, "test", [{"video_id": "good", "qid": "1", "answer": "eat"}], gsub={})
    (root / "map_vid_vidorID.json").write_text(json.dumps(videos))
    return root


def run_prepare(root: Path, out: Path, num_frames: int = 8, **decode) -> dict[str, dict]:
    params = _prepare_params(root, out, num_frames)
    params = dataclasses.replace(params, decode=DecodeConfig(num_frames=num_frames, **decode))
    prepare.run(params)
    return {row["video_id"]: row for row in read_table(out / "videos.parquet", VIDEO_MANIFEST).to_pylist()}


def grey_levels(path: Path, indices: list[int]) -> list[int]:
    frames = read_frames(str(path), np.asarray(sorted(set(indices))))  # (U, H, W, C)
    level = dict(zip(sorted(set(indices)), frames.reshape(len(frames), -1).mean(axis=1), strict=True))
    return [int(round(level[i])) for i in indices]


@pytest.fixture
def good_video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "nextgqa" / "videos" / "0000" / "good.mp4", num_frames=40, fps=10)


# ---------------------------------------------------------------------------------------------
# Videos


def test_variable_frame_rate_uses_presentation_timestamps(tmp_path: Path, good_video: Path):
    root = nextgqa_folder(tmp_path / "nextgqa", {"good": "0000/good", "vfr": "0000/vfr", "vfr_official": "0000/vfr2"})
    write_vfr_video(root / "videos" / "0000" / "vfr.mp4", VFR_PTS)
    write_vfr_video(root / "videos" / "0000" / "vfr2.mp4", VFR_PTS)
    official = [0.0, 1.0, 4.9, 5.0, 5.1, 10.0, 20.0, 29.9]
    (root / "frame2time_val.json").write_text(json.dumps({"vfr_official": official}))
    rows = run_prepare(root, tmp_path / "out")

    probe = probe_video(root / "videos" / "0000" / "vfr.mp4")
    assert probe.vfr and probe.frame_count == 300 and probe.pts is not None
    assert probe.pts[145] == pytest.approx(145 / 30, abs=1e-3)  # 4.83 s (index / avg fps would say 14.4 s)
    vfr = rows["vfr"]
    assert (vfr["status"], vfr["vfr"]) == ("ok", True)
    # Uniform in time: centres of 8 equal segments of [0, end); each slot holds the frame shown then.
    end = vfr["duration"]
    assert end == pytest.approx(30.0, abs=0.2)
    centres = (2 * np.arange(8) + 1) / 16 * end
    timestamps = np.asarray(vfr["timestamps"])
    np.testing.assert_allclose(timestamps, probe.pts[vfr["frame_indices"]])  # timestamps are pts
    assert np.all(timestamps <= centres + 1e-4) and np.all(centres - timestamps < 1 / 6 + 1e-3)
    # The first centre (1.87 s) is in the dense part, frame ~56; by index it would be frame 18 (0.6 s).
    assert 50 < vfr["frame_indices"][0] < 60
    # Official times: the frame shown at t (the last with pts <= t), timestamps kept as given.
    vfr2 = rows["vfr_official"]
    assert vfr2["frame_indices"] == [0, 30, 147, 150, 150, 180, 240, 299]
    assert vfr2["timestamps"] == official
    # The decoded frames are those frames (grey level 2 i): decord's indices follow the pts order.
    levels = grey_levels(root / "videos" / "0000" / "vfr2.mp4", vfr2["frame_indices"])
    assert np.all(np.abs(np.array(levels) - 2 * np.array(vfr2["frame_indices"]) % 256) <= 4), levels
    # A constant-frame-rate video keeps exactly the index-based sampling, with timestamps index / fps.
    good = rows["good"]
    assert good["vfr"] is False and good["frame_indices"] == uniform_frame_indices(40, 8).tolist()
    assert good["timestamps"] == [i / 10 for i in good["frame_indices"]]
    assert read_metadata(tmp_path / "out" / "videos.parquet")["vfr"] == 2


def test_other_containers_are_found_and_ambiguity_is_an_error(tmp_path: Path, good_video: Path):
    import cv2

    root = nextgqa_folder(tmp_path / "nextgqa", {"good": "0000/good", "avi": "0001/avi", "mkv": "0001/mkv"})
    for name, fourcc in (("avi.avi", "MJPG"), ("mkv.mkv", "mp4v")):
        (root / "videos" / "0001").mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(root / "videos" / "0001" / name), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
        for i in range(20):
            writer.write(np.full((48, 64, 3), 6 * i, np.uint8))
        writer.release()
    rows = run_prepare(root, tmp_path / "out")
    assert {v: (r["status"], Path(r["path"]).name) for v, r in rows.items()} == {
        "avi": ("ok", "avi.avi"),
        "good": ("ok", "good.mp4"),
        "mkv": ("ok", "mkv.mkv"),
    }
    # A .webm beside the .mkv, and no .mp4: which one is meant cannot be known.
    (root / "videos" / "0001" / "mkv.webm").write_bytes((root / "videos" / "0001" / "mkv.mkv").read_bytes())
    message = r"video 'mkv': .*mkv\.mp4 does not exist and 2 files could be it: mkv\.webm, mkv\.mkv"
    with pytest.raises(AmbiguousVideoError, match=message):
        run_prepare(root, tmp_path / "out2")
    # The .mp4 the annotation names wins over any other container.
    write_video(root / "videos" / "0001" / "mkv.mp4", num_frames=30)
    assert Path(run_prepare(root, tmp_path / "out3")["mkv"]["path"]).name == "mkv.mp4"


def test_official_times_past_the_end_are_counted_and_mismatch_skips(tmp_path: Path, good_video: Path):
    root = nextgqa_folder(tmp_path / "nextgqa", {"good": "0000/good", "trimmed": "0000/trimmed", "short": "0000/short"})
    write_video(root / "videos" / "0000" / "trimmed.mp4", num_frames=38, fps=10)  # 3.8 s
    write_video(root / "videos" / "0000" / "short.mp4", num_frames=12, fps=10)  # 1.2 s
    official = [0.2, 0.7, 1.2, 1.7, 2.2, 2.7, 3.2, 3.95]  # a 4 s video's
    (root / "frame2time_val.json").write_text(json.dumps({"trimmed": official, "short": official, "good": official}))
    rows = run_prepare(root, tmp_path / "out")
    # 1 of 8 past the end of the trimmed file: kept (<= decode.max_times_past_end 0.25), clamped, counted.
    trimmed = rows["trimmed"]
    assert (trimmed["status"], trimmed["times_past_end"], trimmed["frame_indices"][-1]) == ("ok", 1, 37)
    # 5 of 8 past the end of the short one (1.2 s is its end): not the annotated video.
    short = rows["short"]
    assert (short["status"], short["times_past_end"], short["frame_indices"]) == ("mismatched", 5, None)
    assert short["error"].startswith("5 of 8 official frame times lie past the end of the file (1.20 s")
    assert (rows["good"]["status"], rows["good"]["times_past_end"]) == ("ok", 0)
    meta = read_metadata(tmp_path / "out" / "videos.parquet")
    assert meta["statuses"]["mismatched"] == 1 and meta["times_past_end"] == {"videos": 1, "times": 1}
    # The threshold is the param: at 0.8 the short file is used (its 5 times show the last frame).
    assert run_prepare(root, tmp_path / "out2", max_times_past_end=0.8)["short"]["status"] == "ok"


def test_corrupt_reason_is_ffmpegs_and_decoder_chatter_is_captured(tmp_path: Path, good_video: Path, capfd):
    root = nextgqa_folder(tmp_path / "nextgqa", {"good": "0000/good", "cut": "0000/cut"})
    data = good_video.read_bytes()
    (root / "videos" / "0000" / "cut.mp4").write_bytes(data[: len(data) // 3])
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("cra.prepare").addHandler(handler)
    capfd.readouterr()
    try:
        rows = run_prepare(root, tmp_path / "out")
    finally:
        logging.getLogger("cra.prepare").removeHandler(handler)
    err = capfd.readouterr().err
    assert rows["cut"]["status"] == "corrupt"
    assert rows["cut"]["error"] == "moov atom not found; Invalid data found when processing input"
    assert rows["good"]["status"] == "ok"
    # FFmpeg's and decord's own lines ("[mov,mp4,... @ 0x...] moov atom not found", "... ERROR opening")
    # never reach the terminal (nor the progress bar); the reason is in our one warning line.
    assert "@ 0x" not in err and "video_reader.cc" not in err
    assert "video cut is corrupt: moov atom not found; Invalid data found when processing input" in warnings


def test_a_probe_that_hangs_is_abandoned_as_timeout(tmp_path: Path, good_video: Path, monkeypatch):
    root = nextgqa_folder(tmp_path / "nextgqa", {"good": "0000/good", "a_hang": "0000/a_hang", "z": "0000/z"})
    write_video(root / "videos" / "0000" / "a_hang.mp4")
    write_video(root / "videos" / "0000" / "z.mp4")
    monkeypatch.setattr(prepare, "Prober", functools.partial(Prober, probe=standins.sleepy_probe))
    # 5 s, not 1: a good probe (importing decord in a fresh worker, then opening the file) must fit in it
    # on a busy machine too.
    rows = run_prepare(root, tmp_path / "out", timeout_s=5.0)
    # The stand-in sleeps 600 s and then probes normally: `timeout` means it was abandoned, not waited for.
    assert rows["a_hang"]["status"] == "timeout"
    assert "did not return within decode.timeout_s=5 s" in rows["a_hang"]["error"]
    # The videos after it were probed in a fresh worker.
    assert (rows["good"]["status"], rows["z"]["status"]) == ("ok", "ok")


def test_a_decode_that_hangs_is_abandoned_and_the_rest_decoded(tmp_path: Path):
    paths = [write_video(tmp_path / f"{name}.mp4", num_frames=12) for name in ("v0", "v1_hang", "v2", "v3")]
    requests = [VideoRequest(p.stem, str(p), np.arange(4), np.arange(4) / 10.0) for p in paths]
    decoded = iter_decoded(
        requests, torch.from_numpy, num_workers=2, prefetch_videos=2, timeout_s=2.0, reader=standins.sleepy_reader
    )
    items = list(decoded)  # the stand-in sleeps 600 s on v1_hang, then decodes: `timeout` = abandoned
    assert [item.request.video_id for item in items] == ["v0", "v1_hang", "v2", "v3"]
    failure = items[1]
    assert isinstance(failure, DecodeFailure) and failure.status == "timeout"
    assert "decode.timeout_s=2" in failure.reason
    assert all(isinstance(item, DecodedVideo) and item.frames.shape[0] == 4 for i, item in enumerate(items) if i != 1)


def test_paths_outside_the_video_root_are_refused_unopened(tmp_path: Path, good_video: Path):
    outside = write_video(tmp_path / "elsewhere" / "secret.mp4")  # a valid video: opening it would say `ok`
    root = nextgqa_folder(
        tmp_path / "nextgqa",
        {"good": "0000/good", "up": "../../elsewhere/secret", "abs": str(outside.with_suffix(""))},
    )
    rows = run_prepare(root, tmp_path / "out")
    assert {v: r["status"] for v, r in rows.items()} == {"abs": "refused", "good": "ok", "up": "refused"}
    assert "is an absolute path" in rows["abs"]["error"] and "leads outside it" in rows["up"]["error"]
    assert f"data.video_root ({root / 'videos'})" in rows["up"]["error"]
    assert rows["up"]["path"] == "../../elsewhere/secret" and rows["up"]["frame_count"] is None
    # A `..` that stays inside the root is an ordinary relative path.
    dataset = load_dataset(nextgqa_config(root, video_root="v"))
    assert set(dataset.refused) == {"abs", "up"}
    (root / "map_vid_vidorID.json").write_text(json.dumps({"good": "0000/../0000/good", "up": "x", "abs": "y"}))
    assert load_dataset(nextgqa_config(root, video_root="v")).refused == {}
    # STAR names files by video_id: the same rule.
    items = json.loads((STAR_FIXTURE / "STAR_val.json").read_text())
    items[0]["video_id"] = "../../6H78U"
    (tmp_path / "STAR_val.json").write_text(json.dumps(items))
    star = load_dataset(star_config(annotation_dir=str(tmp_path)))
    assert list(star.refused) == ["../../6H78U"] and star.video_paths["../../6H78U"] == Path("../../6H78U")


# ---------------------------------------------------------------------------------------------
# Annotations


def test_non_utf8_bytes_name_file_line_and_byte(tmp_path: Path):
    root = nextgqa_folder(tmp_path / "nextgqa", {"good": "0000/good"})
    text = (root / "val.csv").read_bytes()
    (root / "val.csv").write_bytes(text.replace(b"what does the boy do", b"what does the caf\xe9 boy do"))
    offset = text.index(b"what does the boy do") + len(b"what does the caf")
    column = offset - (text.index(b"\n") + 1) + 1  # line 2 starts after the header's newline
    message = rf"val\.csv line 2, byte {offset} \(column {column}\): byte 0xe9 is not valid UTF-8"
    with pytest.raises(AnnotationError, match=message):
        load_dataset(nextgqa_config(root))
    (root / "val.csv").write_bytes(text)
    gsub = b'{\n "good": {"duration": 4, "location": {}, "note": "\xff"}}'
    (root / "gsub_val.json").write_bytes(gsub)
    offset = gsub.index(b"\xff")
    with pytest.raises(
        AnnotationError, match=rf"gsub_val\.json line 2, byte {offset} \(column {offset - 1}\): byte 0xff"
    ):
        load_dataset(nextgqa_config(root))
    # Through the CLI: one line, exit status 2, no traceback.
    overrides = [
        "data.dataset=nextgqa",
        f"data.annotation_dir={root}",
        'data.train_split=""',
        "data.eval_splits=[test]",
    ]
    result = CliRunner().invoke(
        app, ["prepare", "--params", str(REPO_ROOT / "params.yaml"), *(f"-S{o}" for o in overrides)]
    )
    assert result.exit_code == 2 and "byte 0xff is not valid UTF-8" in result.output
    assert "Traceback" not in result.output


def test_utf8_bom_is_accepted(tmp_path: Path, good_video: Path):
    root = nextgqa_folder(tmp_path / "nextgqa", {"good": "0000/good"})
    for name in ("val.csv", "test.csv", "map_vid_vidorID.json"):
        (root / name).write_bytes(codecs.BOM_UTF8 + (root / name).read_bytes())
    questions = load_dataset(nextgqa_config(root)).questions
    assert [(q.split, q.video_id, q.answer) for q in questions] == [("val", "good", 0), ("test", "good", 4)]


@pytest.mark.parametrize("bad", ["7", "-1"])
def test_answer_index_out_of_range_is_reported_on_its_row(tmp_path: Path, bad: str):
    rows = [{"video_id": "v1", "qid": str(i), "answer": answer} for i, answer in enumerate(["4", "0", bad, "2"])]
    write_split(tmp_path, "val", rows)
    (tmp_path / "map_vid_vidorID.json").write_text(json.dumps({"v1": "0/v1"}))
    message = rf"val\.csv line 4 \(video v1, qid 2\): answer index {bad} is outside the 5 options \(0-4\)"
    with pytest.raises(AnnotationError, match=message):
        load_dataset(nextgqa_config(tmp_path, eval_splits=["val"], val_split=""))
    # Without the bad row the file loads, as indices.
    write_split(tmp_path, "val", [rows[0], rows[1], rows[3]])
    answers = [q.answer for q in load_dataset(nextgqa_config(tmp_path, eval_splits=["val"], val_split="")).questions]
    assert answers == [4, 0, 2]


def test_numeric_option_texts_are_still_text_answers(tmp_path: Path):
    # Counting questions: every answer is an integer, one "out of range", but each is its row's option text.
    rows = [
        {"video_id": "v1", "qid": "0", "answer": "7", "a0": "3", "a1": "5", "a2": "7", "a3": "9", "a4": "11"},
        {"video_id": "v1", "qid": "1", "answer": "1", "a0": "0", "a1": "1", "a2": "2", "a3": "3", "a4": "4"},
    ]
    write_split(tmp_path, "val", rows)
    (tmp_path / "map_vid_vidorID.json").write_text(json.dumps({"v1": "0/v1"}))
    questions = load_dataset(nextgqa_config(tmp_path, eval_splits=["val"], val_split="")).questions
    assert [q.answer for q in questions] == [2, 1]


def test_segments_past_the_end_are_clipped_or_refused(tmp_path: Path, good_video: Path):
    # good.mp4 is 4.0 s long.
    gsub = {"good": {"duration": 4, "location": {"0": [[1.0, 2.0], [3.0, 5.5]]}}}
    root = nextgqa_folder(tmp_path / "nextgqa", {"good": "0000/good", "other": "0000/other"}, gsub=gsub)
    write_video(root / "videos" / "0000" / "other.mp4")
    run_prepare(root, tmp_path / "out")
    qa = read_table(tmp_path / "out" / "qa.parquet", QA).to_pylist()
    good = next(q for q in qa if (q["split"], q["video_id"]) == ("val", "good"))
    assert good["segments"] == [[1.0, 2.0], [3.0, 4.0]]  # 5.5 clipped to the video's end
    assert read_metadata(tmp_path / "out" / "qa.parquet")["segments_clipped"] == 1
    assert {(q["split"], q["video_id"]) for q in qa} == {("val", "good"), ("val", "other"), ("test", "good")}

    gsub["good"]["location"]["0"] = [[4.5, 5.0]]
    (root / "gsub_val.json").write_text(json.dumps(gsub))
    message = r"split 'val', video good, qid 0: the ground-truth segment \[4\.5, 5\] starts after the end of the video"
    with pytest.raises(AnnotationError, match=message):
        run_prepare(root, tmp_path / "out2")


def test_a_split_without_questions_fails_in_prepare(tmp_path: Path, good_video: Path):
    root = nextgqa_folder(tmp_path / "nextgqa", {"good": "0000/good"})
    header = (root / "test.csv").read_text().splitlines()[0]
    (root / "test.csv").write_text(header + "\n")
    with pytest.raises(PipelineError, match=r"split 'test' \(from `data\.eval_splits`\) has no questions"):
        run_prepare(root, tmp_path / "out")
    assert not (tmp_path / "out" / "qa.parquet").exists()


# ---------------------------------------------------------------------------------------------
# Params


def test_val_split_in_eval_splits_is_refused():
    with pytest.raises(ConfigError, match=r"`data\.val_split` \('val'\) is also listed in `data\.eval_splits`"):
        load_params(REPO_ROOT / "params.yaml", ["data.eval_splits=[test_iid, val]"])
    assert load_params(REPO_ROOT / "params.yaml", ["data.eval_splits=[val]", 'data.val_split=""']).data.val_split == ""


# "'.inf'": what `dvc exp run -S cma.temperature=.inf` writes into params.yaml (a quoted string).
@pytest.mark.parametrize(
    "override", ["gsg.sigma_init=.nan", "cma.temperature=.inf", "train.lr=-.inf", "train.lr=nan", "cma.weight='.inf'"]
)
def test_nan_and_inf_floats_are_refused_by_name(override: str):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"`{key}` must be a finite number"):
        load_params(REPO_ROOT / "params.yaml", [override])


def test_nan_in_the_params_file_is_refused(tmp_path: Path):
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    text = yaml.safe_dump(params).replace("sigma_init: 1.0", "sigma_init: .nan")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"`gsg\.sigma_init` must be a finite number, got nan"):
        load_params(tmp_path / "params.yaml")


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path):
    lines = (REPO_ROOT / "params.yaml").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  sigma_init:"))
    lines[at] = "  sigma_init: [1.0"
    (tmp_path / "params.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=rf"params\.yaml line {at + 2}, column \d+: YAML syntax error"):
        load_params(tmp_path / "params.yaml")
    result = CliRunner().invoke(app, ["train", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 2 and "YAML syntax error" in result.output and "Traceback" not in result.output
    with pytest.raises(ConfigError, match=r"override 'gsg\.sigma_init=\[1' line 1, column 3: YAML syntax error"):
        load_params(REPO_ROOT / "params.yaml", ["gsg.sigma_init=[1"])


# ---------------------------------------------------------------------------------------------
# Faults


def test_temp_files_of_a_killed_stage_are_removed_by_the_next_run(tmp_path: Path, good_video: Path):
    import pyarrow as pa

    schema = pa.schema([pa.field("x", pa.int64())])
    target = tmp_path / "visual.parquet"
    dead = tmp_path / ".visual.parquet.tmp-999999999"  # no such process
    live = tmp_path / f".visual.parquet.tmp-{os.getppid()}"  # a live process (a concurrent run): kept
    other = tmp_path / ".other.parquet.tmp-999999999"  # another artifact's: not this stage's business
    for path in (dead, live, other):
        path.write_bytes(b"half a parquet file")
    write_table(pa.table({"x": [1, 2]}), target, schema)
    assert not dead.exists() and live.exists() and other.exists()
    assert read_table(target).num_rows == 2

    dead.write_bytes(b"again")
    with StreamWriter(target, schema) as writer:
        writer.write({"x": [3]})
    assert not dead.exists() and read_table(target).num_rows == 1
    # Folders too (the `generate` stage stages a whole folder).
    staging = tmp_path / ".synthetic.tmp-999999999"
    (staging / "videos").mkdir(parents=True)
    assert remove_stale_temps(tmp_path / "synthetic") == [staging] and not staging.exists()
