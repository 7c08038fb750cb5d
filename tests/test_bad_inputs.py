"""One test per class of bad input (issue 9): each builds its broken input, asserts the clear error or the
recorded skip / repair, and that the good items still went through.

Videos are made here with OpenCV (constant frame rate) or PyAV (explicit presentation timestamps:
variable frame rate); annotation folders in NExT-GQA's format (tests/test_datasets.py helpers).
"""

from __future__ import annotations

import codecs
import dataclasses
import fractions
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.artifacts.parquet import read_table
from pipeline.artifacts.schemas import VIDEO_MANIFEST
from pipeline.cli import app
from pipeline.config import ConfigError, DecodeConfig, load_params
from pipeline.data.datasets import AnnotationError, load_dataset
from pipeline.data.decode import read_frames
from stages import prepare
from tests.conftest import REPO_ROOT
from tests.test_datasets import _prepare_params, nextgqa_config, write_split
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


# ---------------------------------------------------------------------------------------------
# Params


def test_val_split_in_eval_splits_is_refused():
    with pytest.raises(ConfigError, match=r"`data\.val_split` \('val'\) is also listed in `data\.eval_splits`"):
        load_params(REPO_ROOT / "params.yaml", ["data.eval_splits=[test_iid, val]"])
    assert load_params(REPO_ROOT / "params.yaml", ["data.eval_splits=[val]", 'data.val_split=""']).data.val_split == ""


@pytest.mark.parametrize("override", ["gsg.sigma_init=.nan", "cma.temperature=.inf", "train.lr=-.inf", "train.lr=nan"])
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
