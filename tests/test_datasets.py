"""Dataset adapters (real NExT-GQA files, NExT-GQA-format and STAR fixtures) and the `prepare` stage."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.artifacts.parquet import read_metadata, read_table
from pipeline.artifacts.schemas import QA, VIDEO_MANIFEST
from pipeline.config import DataConfig, DecodeConfig, Params, PathsConfig
from pipeline.data.datasets import AnnotationError, load_dataset, qa_table
from pipeline.errors import PipelineError
from stages import prepare
from tests.test_video_probe import write_video

STAR_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "star"
OPTIONS = ["run", "jump", "sit down", "wave", "eat"]


def nextgqa_config(annotation_dir: Path, **changes) -> DataConfig:
    cfg = DataConfig(
        dataset="nextgqa",
        annotation_dir=str(annotation_dir),
        video_root=str(annotation_dir / "videos"),
        train_split="",
        val_split="val",
        eval_splits=["test"],
    )
    return dataclasses.replace(cfg, **changes)


def write_split(
    root: Path, split: str, rows: list[dict], gsub: dict | None = None, frame2time: dict | None = None
) -> None:
    """A NExT-GQA-format split: rows give video_id, qid, answer (text or index); options are OPTIONS."""
    root.mkdir(parents=True, exist_ok=True)
    header = [
        "video_id",
        "frame_count",
        "width",
        "height",
        "question",
        "answer",
        "qid",
        "type",
        "a0",
        "a1",
        "a2",
        "a3",
        "a4",
    ]
    with (root / f"{split}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for row in rows:
            full = {
                "frame_count": 40,
                "width": 64,
                "height": 48,
                "question": f"what does the boy do {row['qid']}",
                "type": "TC",
            }
            full.update({f"a{i}": option for i, option in enumerate(OPTIONS)})
            full.update(row)
            writer.writerow(full)
    if gsub is not None:
        (root / f"gsub_{split}.json").write_text(json.dumps(gsub))
    if frame2time is not None:
        (root / f"frame2time_{split}.json").write_text(json.dumps(frame2time))


def write_video_map(root: Path, video_ids: list[str]) -> None:
    (root / "map_vid_vidorID.json").write_text(json.dumps({v: f"00{i}/{v}" for i, v in enumerate(video_ids)}))


# ---------------------------------------------------------------------------------------------
# Real NExT-GQA annotations


@pytest.fixture(scope="module")
def real_nextgqa(nextgqa_dir: Path):
    return load_dataset(nextgqa_config(nextgqa_dir, video_root="videos"))


def _question(dataset, split: str, video_id: str, qid: str):
    (match,) = [q for q in dataset.questions if (q.split, q.video_id, q.qid) == (split, video_id, qid)]
    return match


def test_real_nextgqa_counts(real_nextgqa):
    splits = [q.split for q in real_nextgqa.questions]
    assert splits.count("val") == 3358 and splits.count("test") == 5553
    assert splits == sorted(splits, key=["val", "test"].index)  # val block first, as in params
    assert len(real_nextgqa.video_paths) == 567 + 990  # no video in both splits
    assert len(real_nextgqa.frame_times) == 1557
    assert {len(t) for t in real_nextgqa.frame_times.values()} == {32}
    assert sum(not q.segments for q in real_nextgqa.questions) == 0  # every question has a label


def test_real_nextgqa_multi_segment_and_verbatim_labels(real_nextgqa):
    q = _question(real_nextgqa, "val", "10001787725", "3")
    assert q.segments == ((12.1, 17.1), (20.0, 23.5), (29.7, 33.2))
    assert q.duration == 34.0
    # Six segments, and negative starts kept as labelled (the official scorer uses them as they are).
    assert len(_question(real_nextgqa, "test", "10376859826", "3").segments) == 6
    assert _question(real_nextgqa, "test", "3305288577", "0").segments == ((-0.1, 25.1),)
    multi = sum(len(q.segments) > 1 for q in real_nextgqa.questions)
    assert multi == 339 + 591


def test_real_nextgqa_text_answers_become_indices(real_nextgqa):
    # val.csv's first row: answer "unwrap it" is option a2.
    q = _question(real_nextgqa, "val", "4882821564", "1")
    assert q.options[q.answer] == "unwrap it" and q.answer == 2 and q.type == "CW"
    # test.csv has one answer ("happy") equal to two options (a3, a4): the first is taken, and logged.
    assert _question(real_nextgqa, "test", "3842638015", "4").answer == 3
    assert len(real_nextgqa.warnings) == 1 and "3842638015/4" in real_nextgqa.warnings[0]


def test_real_nextgqa_order_paths_and_table(real_nextgqa):
    qids = [q.qid for q in real_nextgqa.questions if q.video_id == "10030609934"]
    assert qids == ["1", "2", "3", "4", "5", "7", "8", "9", "10", "11"]  # natural order, not "1", "10", ...
    assert real_nextgqa.video_paths["10001787725"] == Path("videos/1009/10001787725.mp4")
    assert real_nextgqa.frame_times["10001787725"][:2] == [1.2, 2.2]
    table = qa_table(real_nextgqa.questions)
    assert table.schema == QA and table.num_rows == 8911
    row = table.slice(0, 1).to_pylist()[0]
    first = real_nextgqa.questions[0]
    assert row["options"] == list(first.options) and row["segments"] == [list(s) for s in first.segments]


def test_real_nextgqa_empty_location_videos(nextgqa_dir: Path, tmp_path: Path):
    # val's gsub has 3 videos with an empty `location` (no csv row uses them). Ask a question about
    # one: it must load with no segments and the video's duration.
    gsub = json.loads((nextgqa_dir / "gsub_val.json").read_text())
    empty = sorted(v for v, entry in gsub.items() if not entry["location"])
    assert empty == ["2830899473", "2940373590", "6272786009"]
    write_split(tmp_path, "val", [{"video_id": empty[0], "qid": "0", "answer": "wave"}], gsub=gsub)
    write_video_map(tmp_path, [empty[0]])
    (q,) = load_dataset(nextgqa_config(tmp_path, eval_splits=["val"])).questions
    assert q.segments == () and q.duration == float(gsub[empty[0]]["duration"]) and q.answer == 3


def test_real_nextgqa_missing_split_names_file_and_param(nextgqa_dir: Path):
    with pytest.raises(AnnotationError, match=r"train\.csv not found.*data\.train_split.*\"\""):
        load_dataset(nextgqa_config(nextgqa_dir, train_split="train"))
    with pytest.raises(AnnotationError, match=r"test_ood\.csv not found.*remove 'test_ood' from data\.eval_splits"):
        load_dataset(nextgqa_config(nextgqa_dir, eval_splits=["test", "test_ood"]))


# ---------------------------------------------------------------------------------------------
# NExT-GQA-format fixtures: answer formats and malformed files


def test_index_answers_and_questions_absent_from_gsub(tmp_path: Path):
    rows = [{"video_id": "v1", "qid": "0", "answer": "4"}, {"video_id": "v1", "qid": "1", "answer": "0"}]
    gsub = {"v1": {"duration": 12, "fps": 30, "location": {"0": [[1.0, 2.5], [4, 6]]}}}
    write_split(tmp_path, "val", rows, gsub=gsub)
    write_video_map(tmp_path, ["v1"])
    q0, q1 = load_dataset(nextgqa_config(tmp_path, eval_splits=["val"])).questions
    assert (q0.answer, q0.segments, q0.duration) == (4, ((1.0, 2.5), (4.0, 6.0)), 12.0)
    assert (q1.answer, q1.segments, q1.duration) == (0, (), 12.0)  # no label for qid 1


def test_train_split_without_gsub_and_text_answers(tmp_path: Path):
    write_split(tmp_path, "train", [{"video_id": "v9", "qid": "3", "answer": "sit down"}])
    write_split(tmp_path, "val", [{"video_id": "v1", "qid": "0", "answer": "1"}], gsub={})
    write_video_map(tmp_path, ["v1", "v9"])
    dataset = load_dataset(nextgqa_config(tmp_path, train_split="train", eval_splits=["val"]))
    train, val = dataset.questions
    assert (train.split, train.answer, train.segments, train.duration) == ("train", 2, (), None)
    assert (val.split, val.answer) == ("val", 1)
    assert dataset.warnings == ()  # a train split without gsub is normal


@pytest.mark.parametrize(
    "rows, gsub, message",
    [
        (
            [{"video_id": "v1", "qid": "0", "answer": "fly"}],
            {},
            r"val\.csv line 2 \(video v1, qid 0\): answer 'fly' matches none",
        ),
        (  # an index among text answers: the file is read as text, so "3" must be an option's text
            [{"video_id": "v1", "qid": "0", "answer": "run"}, {"video_id": "v1", "qid": "1", "answer": "3"}],
            {},
            r"line 3 \(video v1, qid 1\): answer '3' matches none .* answers in this file are option texts",
        ),
        (
            [{"video_id": "v1", "qid": "0", "answer": "run"}, {"video_id": "v1", "qid": "0", "answer": "eat"}],
            {},
            r"line 3 \(video v1, qid 0\): duplicate of line 2",
        ),
        ([{"video_id": "v1", "qid": "0", "question": " ", "answer": "run"}], {}, r"line 2 .*`question` is empty"),
        (
            [{"video_id": "v1", "qid": "0", "answer": "run"}],
            {"v1": {"duration": 5, "location": {"0": [[3.0, 1.0]]}}},
            r"gsub_val\.json video v1 qid 0: segment \[3\.0, 1\.0\] must have finite start <= end",
        ),
        (
            [{"video_id": "v1", "qid": "0", "answer": "run"}],
            {"v1": {"duration": 5, "location": {"0": [1.0, 2.0]}}},
            r"gsub_val\.json video v1 qid 0: a segment must be \[start_s, end_s\]",
        ),
    ],
)
def test_malformed_annotations_name_file_and_row(tmp_path: Path, rows, gsub, message):
    write_split(tmp_path, "val", rows, gsub=gsub)
    write_video_map(tmp_path, ["v1"])
    with pytest.raises(AnnotationError, match=message):
        load_dataset(nextgqa_config(tmp_path, eval_splits=["val"]))


def test_unmapped_video_and_bad_columns(tmp_path: Path):
    write_split(
        tmp_path,
        "val",
        [{"video_id": "v1", "qid": "0", "answer": "run"}, {"video_id": "v2", "qid": "0", "answer": "run"}],
    )
    write_video_map(tmp_path, ["v1"])
    with pytest.raises(AnnotationError, match=r"map_vid_vidorID\.json: 1 video_id\(s\) .* \(first: v2\)"):
        load_dataset(nextgqa_config(tmp_path, eval_splits=["val"]))
    (tmp_path / "val.csv").write_text("video_id,qid,question,type,a0,a1\nv1,0,q,TC,x,y\n")
    with pytest.raises(AnnotationError, match=r"val\.csv: missing column\(s\) \['answer'\]"):
        load_dataset(nextgqa_config(tmp_path, eval_splits=["val"]))


# ---------------------------------------------------------------------------------------------
# Synthetic (NExT-GQA format written by `generate`) and STAR


def test_synthetic_adapter_reads_generator_layout(tmp_path: Path):
    root = tmp_path / "synthetic"
    splits = ["train", "val", "test_iid", "test_ood"]
    for i, split in enumerate(splits):
        video = f"s{i}"
        write_split(
            root,
            split,
            [{"video_id": video, "qid": "1", "answer": str(i)}, {"video_id": video, "qid": "0", "answer": "0"}],
            gsub={video: {"duration": 4.0, "fps": 10, "location": {"0": [[0.5, 1.5]], "1": [[2.0, 3.5]]}}},
        )
    (root / "map_vid_vidorID.json").write_text(json.dumps({f"s{i}": f"{i:04d}/s{i}" for i in range(4)}))
    data = DataConfig(dataset="synthetic", annotation_dir=str(root), video_root=str(root / "videos"))
    dataset = load_dataset(data)
    assert dataset.name == "synthetic" and dataset.splits == tuple(splits) and dataset.frame_times == {}
    assert [(q.split, q.qid, q.answer) for q in dataset.questions] == [
        ("train", "0", 0),
        ("train", "1", 0),
        ("val", "0", 0),
        ("val", "1", 1),
        ("test_iid", "0", 0),
        ("test_iid", "1", 2),
        ("test_ood", "0", 0),
        ("test_ood", "1", 3),
    ]
    assert dataset.questions[1].segments == ((2.0, 3.5),)
    assert dataset.video_paths["s2"] == root / "videos" / "0002" / "s2.mp4"

    (root / "test_ood.csv").unlink()
    with pytest.raises(AnnotationError, match=r"test_ood\.csv not found.*dvc repro generate"):
        load_dataset(data)


def star_config(**changes) -> DataConfig:
    cfg = DataConfig(
        dataset="star",
        annotation_dir=str(STAR_FIXTURE),
        video_root="charades",
        train_split="",
        val_split="val",
        eval_splits=["val"],
    )
    return dataclasses.replace(cfg, **changes)


def test_star_fixture():
    dataset = load_dataset(star_config())
    assert dataset.name == "star" and dataset.splits == ("val",)
    assert [q.qid for q in dataset.questions] == [
        "Feasibility_T2_7",
        "Prediction_T1_33",  # video 0A8CF
        "Interaction_T1_13",
        "Interaction_T1_14",  # 6H78U
        "Sequence_T1_2",
        "Sequence_T1_10",  # YSKX3, natural qid order
    ]
    by_qid = {q.qid: q for q in dataset.questions}
    thrown = by_qid["Interaction_T1_14"]  # choices listed out of choice_id order in the file
    assert thrown.options == ("The broom.", "The bag.", "The shoe.", "The pillow.") and thrown.answer == 3
    assert thrown.type == "Interaction" and thrown.segments == ((1.2, 8.4),) and thrown.duration is None
    assert by_qid["Sequence_T1_10"].answer == 3 and by_qid["Prediction_T1_33"].answer == 2
    assert {q.type for q in dataset.questions} == {"Interaction", "Sequence", "Prediction", "Feasibility"}
    assert dataset.video_paths == {v: Path("charades") / f"{v}.mp4" for v in ("0A8CF", "6H78U", "YSKX3")}
    table = qa_table(dataset.questions)
    assert table.schema == QA and table.column("options").to_pylist()[0] == list(dataset.questions[0].options)


def test_star_errors(tmp_path: Path):
    items = json.loads((STAR_FIXTURE / "STAR_val.json").read_text())
    del items[2]["answer"]
    (tmp_path / "STAR_test.json").write_text(json.dumps(items))
    with pytest.raises(
        AnnotationError, match=r"STAR_test\.json item 2 \(question_id Sequence_T1_2\): no `answer`.*hidden"
    ):
        load_dataset(star_config(annotation_dir=str(tmp_path), eval_splits=["test"], val_split=""))
    items = json.loads((STAR_FIXTURE / "STAR_val.json").read_text())
    items[4]["choices"] = items[4]["choices"][:3]
    (tmp_path / "STAR_val.json").write_text(json.dumps(items))
    with pytest.raises(
        AnnotationError, match=r"item 4 \(question_id Prediction_T1_33\): `choices` must be a list of 4"
    ):
        load_dataset(star_config(annotation_dir=str(tmp_path)))
    with pytest.raises(AnnotationError, match=r"STAR_train\.json not found.*data\.train_split"):
        load_dataset(star_config(train_split="train"))


# ---------------------------------------------------------------------------------------------
# Stage `prepare` end to end


def _prepare_params(root: Path, out: Path, num_frames: int = 8) -> Params:
    return dataclasses.replace(
        Params(),
        paths=PathsConfig(qa_table=str(out / "qa.parquet"), video_manifest=str(out / "videos.parquet")),
        data=nextgqa_config(root),
        decode=DecodeConfig(num_frames=num_frames, use_frame2time=True),
    )


@pytest.fixture
def prepared_fixture(tmp_path: Path) -> tuple[Path, Path]:
    """val: video a (ok, 40 frames at 10 fps, official times) and b (ok, 25 frames at 5 fps, official
    list of the wrong length); test: c (missing) and d (garbage bytes)."""
    root = tmp_path / "nextgqa"
    times_a = [0.0, 0.5, 1.04, 1.5, 2.0, 2.5, 3.0, 9.0]
    write_split(
        root,
        "val",
        [
            {"video_id": "b", "qid": "0", "answer": "run"},
            {"video_id": "a", "qid": "10", "answer": "eat"},
            {"video_id": "a", "qid": "2", "answer": "wave"},
        ],
        gsub={"a": {"duration": 4, "fps": 10, "location": {"2": [[0.5, 1.0], [2.0, 3.0]]}}},
        frame2time={"a": times_a, "b": [0.0, 1.0]},
    )
    write_split(
        root, "test", [{"video_id": "d", "qid": "0", "answer": "jump"}, {"video_id": "c", "qid": "1", "answer": "wave"}]
    )
    write_video_map(root, ["a", "b", "c", "d"])  # a -> 000/a, b -> 001/b, ...
    write_video(root / "videos" / "000" / "a.mp4", num_frames=40, fps=10)
    write_video(root / "videos" / "001" / "b.mp4", num_frames=25, fps=5, width=32, height=32)
    (root / "videos" / "003").mkdir()
    (root / "videos" / "003" / "d.mp4").write_bytes(b"\x00\x01 definitely not a video" * 40)
    return root, tmp_path / "prepared"


def test_prepare_end_to_end(prepared_fixture):
    root, out = prepared_fixture
    params = _prepare_params(root, out)
    prepare.run(params)

    qa = read_table(out / "qa.parquet", QA)
    assert qa.schema.remove_metadata() == QA
    keys = qa.select(["split", "video_id", "qid", "answer"]).to_pylist()
    assert [(r["split"], r["video_id"], r["qid"], r["answer"]) for r in keys] == [
        ("val", "a", "2", 3),
        ("val", "a", "10", 4),
        ("val", "b", "0", 0),
        ("test", "c", "1", 3),
        ("test", "d", "0", 1),
    ]
    assert qa.column("segments").to_pylist()[0] == [[0.5, 1.0], [2.0, 3.0]]
    assert qa.column("duration").to_pylist() == [4.0, 4.0, None, None, None]
    assert read_metadata(out / "qa.parquet") == {
        "schema_version": 1,
        "artifact": "qa",
        "dataset": "nextgqa",
        "num_frames": 8,
        "splits": ["val", "test"],
        "questions": {"val": 3, "test": 2},
        "segments_clipped": 0,
    }

    manifest = read_table(out / "videos.parquet", VIDEO_MANIFEST)
    assert manifest.schema.remove_metadata() == VIDEO_MANIFEST
    rows = {r["video_id"]: r for r in manifest.to_pylist()}
    assert list(rows) == ["a", "b", "c", "d"]
    a, b, c, d = rows["a"], rows["b"], rows["c"], rows["d"]
    probed = (a["status"], a["frame_count"], a["fps"], a["duration"], a["width"], a["height"])
    assert probed == ("ok", 40, 10.0, 4.0, 64, 48)
    assert a["path"] == f"{root.as_posix()}/videos/000/a.mp4" and a["error"] is None
    # Official times: the frame shown at t, floor(t * 10) = 0, 5, 10 (10.4), 15, 20, 25, 30, 90 -> clamped
    # to 39 (9.0 s is past the 4 s file: counted, 1 of 8 is within decode.max_times_past_end).
    assert a["frame_indices"] == [0, 5, 10, 15, 20, 25, 30, 39]
    assert a["timestamps"] == [0.0, 0.5, 1.04, 1.5, 2.0, 2.5, 3.0, 9.0]
    assert (a["vfr"], a["times_past_end"]) == (False, 1)
    assert (b["vfr"], b["times_past_end"]) == (False, None)  # not sampled at official times
    # b's official list has 2 entries, not T = 8: uniform centres floor((2i + 1) 25 / 16), timestamps index / 5.
    assert b["frame_indices"] == [1, 4, 7, 10, 14, 17, 20, 23] and (b["width"], b["height"]) == (32, 32)
    np.testing.assert_allclose(b["timestamps"], np.array(b["frame_indices"]) / 5)
    assert (c["status"], c["frame_indices"], c["fps"]) == ("missing", None, None) and "003" not in c["path"]
    assert c["path"] == f"{root.as_posix()}/videos/002/c.mp4" and "no such file" in c["error"]
    assert (d["status"], d["timestamps"], d["vfr"]) == ("corrupt", None, None)
    assert d["error"] == "moov atom not found; Invalid data found when processing input"  # FFmpeg's words
    meta = read_metadata(out / "videos.parquet")
    statuses = {"ok": 2, "missing": 1, "empty": 0, "corrupt": 1, "timeout": 0, "refused": 0, "mismatched": 0}
    assert meta["statuses"] == statuses
    assert (meta["vfr"], meta["times_past_end"]) == (0, {"videos": 1, "times": 1})
    assert meta["sampling"] == {"frame2time": 1, "uniform_fallback": 1}
    assert (meta["artifact"], meta["num_frames"], meta["use_frame2time"]) == ("video_manifest", 8, True)

    # A re-run writes the same bytes (DVC sees no change).
    before = [(out / name).read_bytes() for name in ("qa.parquet", "videos.parquet")]
    prepare.run(params)
    assert [(out / name).read_bytes() for name in ("qa.parquet", "videos.parquet")] == before


def test_prepare_uniform_when_frame2time_off(prepared_fixture):
    root, out = prepared_fixture
    params = _prepare_params(root, out, num_frames=4)
    params = dataclasses.replace(params, decode=DecodeConfig(num_frames=4, use_frame2time=False))
    prepare.run(params)
    frames = pq.read_table(out / "videos.parquet").column("frame_indices").to_pylist()
    assert frames == [[5, 15, 25, 35], [3, 9, 15, 21], None, None]
    assert read_metadata(out / "videos.parquet")["sampling"] == {"uniform": 2}


def test_prepare_without_usable_videos_is_a_clear_error(prepared_fixture, tmp_path: Path):
    root, out = prepared_fixture
    params = _prepare_params(root, out)
    missing_root = dataclasses.replace(
        params, data=dataclasses.replace(params.data, video_root=str(tmp_path / "elsewhere"))
    )
    message = r"nothing to extract: none of the 4 videos exists under data\.video_root=.*elsewhere.*download"
    with pytest.raises(PipelineError, match=message):
        prepare.run(missing_root)
    assert not (out / "qa.parquet").exists()

    for name in ("000/a.mp4", "001/b.mp4"):
        (root / "videos" / name).write_bytes(b"")
    message = r"none of the 4 videos can be used \(missing: 1, empty: 2, corrupt: 1\).*a: zero-byte file"
    with pytest.raises(PipelineError, match=message):
        prepare.run(params)
