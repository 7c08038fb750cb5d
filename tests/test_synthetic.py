"""The synthetic confounded VideoQG benchmark, generator 2.x (stage `generate`).

The tiny preset is rendered once per module (and twice more for determinism); the properties of
timelines, questions and confounders are checked on a few hundred videos built annotation-only
(`build_split`, ~1 ms a video), since rendering is the slow part.

Statistics (all at fixed seeds, so they are deterministic; the thresholds are 99.9 % levels):
- agreement rates: each question's two nuisances are drawn per question, so the agreements are
  Bernoulli(rho + (1 - rho) / 5) per question (`expected_agreement`). The count's Wilson 99.9 %
  interval must contain that rate: rho's in train, 1/5 in test_ood (uniform over 5 values) and
  in train with rho = 0 (independent of the answer, not "never the paired value").
- independence: a chi-square test of the 5 x 5 table (nuisance value x answer kind, one count per
  question) must not reject (p > 0.001) where the draws are independent; the same test on train
  with rho > 0 must reject (p < 1e-6), which shows the sample is big enough for the test to see a
  correlation.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import cv2
import decord
import numpy as np
import pytest
from scipy.stats import chi2_contingency, chisquare

from pipeline.config import Params, PathsConfig, SyntheticConfig
from pipeline.data.synthetic import GENERATOR_VERSION, SPLITS, build_dataset, build_split, get_preset, write_annotations
from pipeline.data.synthetic.dataset import expected_agreement
from pipeline.data.synthetic.records import script_from_record
from pipeline.data.synthetic.render import cell_box, scene_states
from pipeline.data.synthetic.timeline import MIN_GAP_DS, MIN_PAD_SAMPLES, NUM_CELLS, min_event_ds
from pipeline.data.synthetic.vocabulary import (
    BACKGROUND_RGB,
    COLOURS,
    CUE_COLOURS,
    CUE_MARGIN,
    CUE_NAMES,
    EVENT_KINDS,
    GLOW_RGB,
    KIND_BY_NAME,
    KIND_NAMES,
    LEAD_INS,
    PALE_MIX,
    SHAPES,
    STATES,
    paired_cue,
    paired_lead_in,
)
from pipeline.errors import PipelineError
from stages.generate import generate, run

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = SyntheticConfig(preset="tiny", seed=2)  # a seed whose 16 videos ask every question type
NEXTGQA_TYPES = {"CW", "CH", "TN", "TC", "TP", "DC", "DL", "DO"}
GENERATOR_TYPES = {"DO", "TN", "TP", "CW"}
Z_999 = 3.2905  # two-sided 99.9 % normal quantile


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny preset, rendered by the stage function."""
    out = tmp_path_factory.mktemp("bench") / "synthetic"
    generate(out, TINY, None)
    return out


@pytest.fixture(scope="module")
def annotations_only(tmp_path_factory) -> Path:
    """300 videos of the default preset, written without videos: the file checks on more questions."""
    out = tmp_path_factory.mktemp("annotations")
    write_annotations(build_dataset(SyntheticConfig(preset="default", seed=7), total_videos=300), out, 300)
    return out


@pytest.fixture(scope="module")
def statistics_sample() -> dict:
    """400 train and 400 test_ood videos (2,400 questions each), annotation-only, two different rhos."""
    cfg = SyntheticConfig(preset="tiny", seed=11, rho_visual=0.6, rho_language=0.8)
    return {split: build_split(cfg, split, 400) for split in ("train", "test_ood")} | {"cfg": cfg}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (videos included), by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def wilson(successes: int, n: int, z: float = Z_999) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def questions_of(videos) -> list:
    return [q for v in videos for q in v.questions]


def agreement_counts(videos) -> dict[str, tuple[int, int]]:
    """Per nuisance: (questions whose nuisance is the answer kind's paired value, questions)."""
    questions = questions_of(videos)
    return {
        "visual": (sum(q.cue == paired_cue(q.answer_kind) for q in questions), len(questions)),
        "language": (sum(q.lead_in == paired_lead_in(q.answer_kind) for q in questions), len(questions)),
    }


def contingency(videos, nuisance: str) -> np.ndarray:
    """(5, 5) counts of questions: nuisance value x answer kind."""
    values = CUE_NAMES if nuisance == "visual" else LEAD_INS
    table = np.zeros((len(values), len(KIND_NAMES)), int)
    for q in questions_of(videos):
        value = q.cue if nuisance == "visual" else q.lead_in
        table[values.index(value), KIND_NAMES.index(q.answer_kind)] += 1
    return table


# ---------------------------------------------------------------------------------------------
# Determinism and presets


def test_same_seed_gives_byte_identical_files(tiny: Path, tmp_path: Path):
    # The second run goes through the stage entry point, as `dvc repro` does.
    params = Params(paths=PathsConfig(synthetic=str(tmp_path / "again")), synthetic=TINY)
    run(params)
    again = tmp_path / "again"
    first = digests(tiny)
    assert sum(name.endswith(".mp4") for name in first) == get_preset("tiny").total_videos == 16
    # Annotations and mp4s alike (the mp4v encoder is deterministic).
    assert digests(again) == first
    # ... and a rerun over an existing benchmark replaces it (no stale files).
    (again / "videos" / "stale.mp4").write_bytes(b"x")
    generate(again, TINY, None)
    assert not (again / "videos" / "stale.mp4").exists()
    assert digests(again) == first


def test_files_do_not_depend_on_the_hash_seed(tiny: Path, tmp_path: Path):
    script = (
        "import sys; from pathlib import Path; from pipeline.config import SyntheticConfig; "
        "from stages.generate import generate; "
        "generate(Path(sys.argv[1]), SyntheticConfig(preset='tiny', seed=2), None)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "out")], cwd=REPO_ROOT, env=env, check=True)
    assert digests(tmp_path / "out") == digests(tiny)


def test_another_seed_gives_another_benchmark(tiny: Path, tmp_path: Path):
    write_annotations(build_dataset(dataclasses.replace(TINY, seed=4)), tmp_path)
    for name in ("train.csv", "gsub_train.json", "events_train.json"):
        assert (tmp_path / name).read_bytes() != (tiny / name).read_bytes(), name


def test_split_sizes_follow_the_preset_and_the_override():
    default = get_preset("default")
    assert default.split_sizes(None) == {"train": 600, "val": 60, "test_iid": 100, "test_ood": 100}
    # Issue 7: at least 100 videos and 600 questions (6 a video) in each test split by default.
    for split in ("test_iid", "test_ood"):
        videos = build_split(SyntheticConfig(preset="default"), split, default.videos[split])
        assert len(videos) >= 100 and len(questions_of(videos)) >= 600
    assert get_preset("large").total_videos == 4 * default.total_videos
    # 100 * (600, 60, 100, 100) / 860 = (69.77, 6.98, 11.63, 11.63): the leftovers go by largest remainder.
    assert default.split_sizes(100) == {"train": 70, "val": 7, "test_iid": 12, "test_ood": 11}
    assert default.split_sizes(4) == {"train": 1, "val": 1, "test_iid": 1, "test_ood": 1}
    for total in (5, 17, 241, 1000):
        assert sum(default.split_sizes(total).values()) == total
    with pytest.raises(PipelineError, match="--videos 3 is too few"):
        default.split_sizes(3)
    with pytest.raises(PipelineError, match="synthetic.preset"):
        get_preset("huge")


def test_the_videos_override_sizes_the_written_benchmark(tmp_path: Path):
    info = write_annotations(build_dataset(TINY, total_videos=8), tmp_path, 8)
    sizes = get_preset("tiny").split_sizes(8)
    assert {s: info["splits"][s]["videos"] for s in SPLITS} == sizes
    assert info["total_videos"] == 8 and len(read_json(tmp_path / "map_vid_vidorID.json")) == 8
    for split in SPLITS:
        assert len(read_json(tmp_path / f"gsub_{split}.json")) == sizes[split]


def test_generate_refuses_to_replace_a_foreign_folder(tmp_path: Path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(PipelineError, match="is not a synthetic benchmark"):
        generate(tmp_path, TINY, 4)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# NExT-GQA file format


def check_qa_rows(columns: list[str], rows: list[dict[str, str]], where: str) -> None:
    """The parsing rules of NExT-GQA's {split}.csv (answer as an index, as NExT-QA writes it)."""
    assert columns == ["video_id", "frame_count", "width", "height", "question", "answer", "qid", "type"] + [
        f"a{i}" for i in range(5)
    ], where
    keys = set()
    for row in rows:
        assert row["video_id"].isdigit(), (where, row)
        assert int(row["frame_count"]) > 0 and int(row["width"]) > 0 and int(row["height"]) > 0
        assert int(row["qid"]) >= 0 and row["type"] in NEXTGQA_TYPES
        options = [row[f"a{i}"] for i in range(5)]
        assert all(options) and row["question"]
        keys.add((row["video_id"], row["qid"]))
    assert len(keys) == len(rows), f"{where}: (video_id, qid) repeats"


def check_gsub(gsub: dict, where: str) -> None:
    for video_id, entry in gsub.items():
        assert video_id.isdigit() and list(entry) == ["duration", "location", "fps"], (where, video_id)
        assert isinstance(entry["duration"], (int, float)) and isinstance(entry["fps"], (int, float))
        for qid, segments in entry["location"].items():
            assert qid.isdigit() and segments, (where, video_id, qid)
            for start, end in segments:
                assert isinstance(start, (int, float)) and isinstance(end, (int, float)) and start <= end


def test_files_parse_with_the_rules_of_the_real_nextgqa_files(tiny: Path, nextgqa_dir: Path):
    real_columns, real_rows = read_csv(nextgqa_dir / "val.csv")
    for row in real_rows:  # the real file stores the answer as text: map it to its index first
        row["answer"] = str([row[f"a{i}"] for i in range(5)].index(row["answer"]))
    check_qa_rows(real_columns, real_rows, "real val.csv")
    check_gsub(read_json(nextgqa_dir / "gsub_val.json"), "real gsub_val.json")
    real_map = read_json(nextgqa_dir / "map_vid_vidorID.json")
    assert all(re.fullmatch(rf"\d{{4}}/{vid}", path) for vid, path in real_map.items())

    video_map = read_json(tiny / "map_vid_vidorID.json")
    assert all(re.fullmatch(rf"\d{{4}}/{vid}", path) for vid, path in video_map.items())
    raw = (tiny / "train.csv").read_bytes()
    assert b'"' not in raw and b"\r" not in raw  # unquoted, LF, like the real files
    total = 0
    for split in SPLITS:
        columns, rows = read_csv(tiny / f"{split}.csv")
        check_qa_rows(columns, rows, f"{split}.csv")
        gsub = read_json(tiny / f"gsub_{split}.json")
        check_gsub(gsub, f"gsub_{split}.json")
        for row in rows:
            assert 0 <= int(row["answer"]) <= 4 and row["type"] in GENERATOR_TYPES
            assert len({row[f"a{i}"] for i in range(5)}) == 5
            assert (int(row["width"]), int(row["height"])) == (TINY.width, TINY.height)
            assert int(row["frame_count"]) == round(gsub[row["video_id"]]["duration"] * gsub[row["video_id"]]["fps"])
            assert gsub[row["video_id"]]["location"][row["qid"]]  # every question is grounded
        assert {(v, q) for v, e in gsub.items() for q in e["location"]} == {(r["video_id"], r["qid"]) for r in rows}
        assert Counter(r["video_id"] for r in rows) == dict.fromkeys(gsub, 6)  # one question per object
        assert set(gsub) <= set(video_map)
        total += len(rows)
    info = read_json(tiny / "dataset.json")
    assert info["preset"] == "tiny" and info["seed"] == TINY.seed and info["rho_visual"] == TINY.rho_visual
    assert sum(s["questions"] for s in info["splits"].values()) == total == 96
    assert [info["splits"][s]["videos"] for s in SPLITS] == [7, 3, 3, 3]


def test_the_project_adapter_reads_the_benchmark(tiny: Path):
    from pipeline.config import DataConfig
    from pipeline.data.datasets import load_dataset

    data = DataConfig(dataset="synthetic", annotation_dir=str(tiny), video_root=str(tiny / "videos"))
    dataset = load_dataset(data)
    _, rows = read_csv(tiny / "test_ood.csv")
    gsub = read_json(tiny / "gsub_test_ood.json")
    loaded = {(q.video_id, q.qid): q for q in dataset.questions if q.split == "test_ood"}
    assert len(loaded) == len(rows)
    for row in rows:
        q = loaded[(row["video_id"], row["qid"])]
        assert q.answer == int(row["answer"]) and q.options == tuple(row[f"a{i}"] for i in range(5))
        assert q.type == row["type"] and q.question == row["question"]
        assert [list(s) for s in q.segments] == gsub[row["video_id"]]["location"][row["qid"]]
    assert all(path.exists() for path in dataset.video_paths.values())


# ---------------------------------------------------------------------------------------------
# Videos


def test_videos_decode_with_the_annotated_frame_count_fps_and_size(tiny: Path):
    video_map = read_json(tiny / "map_vid_vidorID.json")
    preset = get_preset("tiny")
    checked = 0
    for split in SPLITS:
        _, rows = read_csv(tiny / f"{split}.csv")
        frame_counts = {r["video_id"]: int(r["frame_count"]) for r in rows}
        for video_id, entry in read_json(tiny / f"gsub_{split}.json").items():
            reader = decord.VideoReader(str(tiny / "videos" / f"{video_map[video_id]}.mp4"))
            assert len(reader) == frame_counts[video_id]
            assert reader.get_avg_fps() == pytest.approx(entry["fps"])
            assert len(reader) / reader.get_avg_fps() == pytest.approx(entry["duration"])
            assert reader[0].shape == (TINY.height, TINY.width, 3)
            assert preset.min_duration_s <= entry["duration"] <= preset.max_duration_s
            assert entry["fps"] in preset.fps_choices
            checked += 1
    assert checked == 16


def colour_counts(frames: np.ndarray, rgb: tuple[int, ...], tolerance: int, box=None) -> np.ndarray:
    """(N,) pixels of `rgb` within `tolerance` per channel (mp4v is lossy) in frames (N, H, W, 3), in `box`."""
    if box is not None:
        x0, y0, x1, y1 = box
        frames = frames[:, y0:y1, x0:x1]
    N, H, W, _ = frames.shape
    low = np.clip(np.array(rgb) - tolerance, 0, 255).astype(np.uint8)
    high = np.clip(np.array(rgb) + tolerance, 0, 255).astype(np.uint8)
    mask = cv2.inRange(np.ascontiguousarray(frames).reshape(N * H, W, 3), low, high)  # (N * H, W) 0 / 255
    return (mask.reshape(N, H * W) > 0).sum(axis=1)


def test_frames_show_the_timeline(tiny: Path):
    """Every frame of every tiny video, against the renderer's scene states of its written script.

    An object on screen keeps its own colour in view, in its own cell, with an area (relative to its
    normal look) that tells the state; off screen its colour is nowhere in the frame; a cell's corner
    shows the backdrop cue behind its object when there is one, else the plain background."""
    video_map = read_json(tiny / "map_vid_vidorID.json")
    W, H = TINY.width, TINY.height
    seen = Counter()
    for split in SPLITS:
        for video_id, record in read_json(tiny / f"events_{split}.json").items():
            script = script_from_record(record)
            reader = decord.VideoReader(str(tiny / "videos" / f"{video_map[video_id]}.mp4"))
            frames = reader.get_batch(list(range(script.frame_count))).asnumpy()  # (N, H, W, 3)
            states = scene_states(script, 10 * np.arange(script.frame_count))
            boxes = [tuple(round(v) for v in cell_box(cell, W, H)) for cell in range(NUM_CELLS)]
            cue_of_cell = [{} for _ in states]  # per frame: cell -> the cue shown there
            for k, obj in enumerate(script.objects):
                box = boxes[obj.cell]
                area = colour_counts(frames, COLOURS[obj.colour], 60, box)  # (N,) in its cell
                anywhere = colour_counts(frames, COLOURS[obj.colour], 40)  # (N,) in the frame, stricter
                normal = [area[i] for i, cells in enumerate(states) if cells[k].state == "normal"]
                reference = float(np.median(normal))  # its own look
                assert reference > 300, (video_id, obj.name)
                pale = colour_counts(
                    frames, [round((1 - PALE_MIX) * c + PALE_MIX * 255) for c in COLOURS[obj.colour]], 60, box
                )
                white = colour_counts(frames, GLOW_RGB, 30, box)
                for i, cells in enumerate(states):
                    cell = cells[k]
                    ratio = area[i] / reference
                    where = (video_id, obj.name, i, cell)
                    if cell.state == "absent":
                        assert anywhere[i] <= 3, where  # nowhere in the frame
                    elif cell.state == "normal":
                        assert 0.8 <= ratio <= 1.25, (where, ratio)
                    elif cell.state == "big":
                        assert ratio > 2.5, (where, ratio)
                    elif cell.state == "small":
                        assert 0.05 < ratio < 0.3, (where, ratio)
                    elif cell.state == "glowing":
                        assert 0.8 <= ratio <= 1.25 and white[i] > 0.7 * reference, (where, ratio)
                    elif cell.state == "pale":
                        assert ratio < 0.05 and pale[i] > 0.8 * reference, (where, ratio)
                    elif cell.state == "split":
                        assert 1.3 < ratio < 1.9, (where, ratio)
                    seen[cell.state] += 1
                    if cell.cue is not None:
                        assert obj.cell not in cue_of_cell[i], where  # one backdrop a cell
                        cue_of_cell[i][obj.cell] = cell.cue
                        seen["cue"] += 1
            inset = round(CUE_MARGIN * min(W, H) / 2) + 2  # just inside the backdrop's margin
            for i, frame in enumerate(frames):
                for cell, (x0, y0, _, _) in enumerate(boxes):
                    cue = cue_of_cell[i].get(cell)
                    expected = BACKGROUND_RGB if cue is None else CUE_COLOURS[cue]
                    corner = frame[y0 + inset, x0 + inset].astype(int)
                    assert np.abs(corner - expected).max() <= 30, (video_id, i, cell, cue, corner)
    assert set(seen) == {"absent", *STATES, "cue"}, seen


# ---------------------------------------------------------------------------------------------
# Timelines


@pytest.mark.parametrize(
    ("preset", "seed", "count"), [("default", 5, 200), ("compositional", 2, 100), ("tiny", 1, 100)]
)
def test_timelines_keep_their_design_promises(preset: str, seed: int, count: int):
    spec = get_preset(preset)
    repeat_counts = Counter()
    for video in build_split(SyntheticConfig(preset=preset, seed=seed), "train", count):
        script = video.script
        where = (preset, video.video_id)
        assert spec.min_duration_s <= script.duration_s <= spec.max_duration_s and script.fps in spec.fps_choices
        # 6 objects, all 6 colours, each in a cell of the 2 x 2 grid.
        assert [o.index for o in script.objects] == list(range(6))
        assert sorted(o.colour for o in script.objects) == sorted(COLOURS), where
        assert all(o.shape in SHAPES and 0 <= o.cell < NUM_CELLS for o in script.objects), where
        # Every kind occurs; events in time order, inside the video, never overlapping.
        events = script.events
        assert [e.index for e in events] == list(range(len(events)))
        assert {e.kind for e in events} == set(KIND_NAMES), where
        assert 0 <= events[0].start_ds and events[-1].end_ds <= script.duration_ds, where
        for a, b in pairwise(events):
            assert b.start_ds >= a.end_ds + MIN_GAP_DS, where
        # Every object acts; repeat actors act twice, in two kinds, never in adjacent events.
        acts = Counter(e.obj for e in events)
        assert set(acts) == set(range(6)) and set(acts.values()) <= {1, 2}, where
        repeat_counts[len(script.repeat_actors)] += 1
        for obj in script.repeat_actors:
            first, second = script.events_of(obj)
            assert first.kind != second.kind and second.index - first.index >= 2, where
        # Every event is seen by the preset's T-frame sampling; pads too.
        assert all(e.end_ds - e.start_ds >= min_event_ds(script.duration_ds, spec.num_frames) for e in events), where
        assert script.pad_ds * spec.num_frames >= MIN_PAD_SAMPLES * script.duration_ds, where
        # Each object is on screen exactly within pad of its events (clipped to the video) ...
        ticks = 10 * np.arange(script.frame_count)
        states = scene_states(script, ticks)
        for k, obj in enumerate(script.objects):
            for tick, cells in zip(ticks, states, strict=True):
                t = tick / script.fps  # deciseconds
                present = any(e.start_ds - script.pad_ds <= t < e.end_ds + script.pad_ds for e in script.events_of(k))
                assert (cells[k].state != "absent") == present, (where, obj.name, tick)
        # ... and objects on screen at the same time never share a cell (checked at every decisecond).
        for ds in range(script.duration_ds):
            cells = [o.cell for o in script.objects if script.on_screen(o.index, ds * script.fps)]
            assert len(cells) == len(set(cells)), (where, ds)
    # The preset's weights decide how many objects act twice.
    assert set(repeat_counts) == {r for r, w in enumerate(spec.repeat_actor_weights) if w > 0}, repeat_counts


# ---------------------------------------------------------------------------------------------
# Questions, evidence and options


def event_named(event: dict, qtype: str, names: list[str]) -> str:
    """The option text that names `event` in a question of type `qtype`."""
    return f"because the {names[event['object']]} {event['text']}" if qtype == "CW" else event["text"]


def annotated_questions(folder: Path):
    """(csv row, the question's events record, its video's record, its segments) of every question."""
    for split in SPLITS:
        _, rows = read_csv(folder / f"{split}.csv")
        gsub = read_json(folder / f"gsub_{split}.json")
        records = read_json(folder / f"events_{split}.json")
        for row in rows:
            record = records[row["video_id"]]
            yield row, record["questions"][row["qid"]], record, gsub[row["video_id"]]["location"][row["qid"]]


@pytest.mark.parametrize("folder", ["tiny", "annotations_only"])
def test_segments_lie_inside_the_video(folder: str, request):
    for split in SPLITS:
        for entry in read_json(request.getfixturevalue(folder) / f"gsub_{split}.json").values():
            for segments in entry["location"].values():
                ((start, end),) = segments  # one evidence event a question
                assert 0 <= start < end <= entry["duration"]
                # Evidence is a modest part of the video, so grounding matters.
                assert end - start <= 0.25 * entry["duration"]


@pytest.mark.parametrize("folder", ["tiny", "annotations_only"])
def test_wrong_options_are_events_of_the_same_video_outside_the_evidence(folder: str, request):
    counted = Counter()
    for row, question, record, segments in annotated_questions(request.getfixturevalue(folder)):
        events = record["events"]
        names = [o["name"] for o in record["objects"]]
        qtype, subject, answer = row["type"], question["subject"], int(row["answer"])
        options = [row[f"a{i}"] for i in range(5)]
        where = (row["video_id"], row["qid"], qtype)
        # One option per event kind, the right one of the answer's kind.
        assert sorted(question["option_kinds"]) == sorted(KIND_NAMES), where
        assert question["option_kinds"][answer] == question["answer_kind"]
        assert question["option_events"][answer] == question["evidence_events"]
        (evidence,) = (events[i] for i in question["evidence_events"])
        assert segments == [[evidence["start"], evidence["end"]]], where
        wrong_events = []
        for i, option_events in enumerate(question["option_events"]):
            (index,) = option_events
            event = events[index]
            assert event_named(event, qtype, names) == options[i], where
            assert event["kind"] == question["option_kinds"][i] and event["text"] == KIND_BY_NAME[event["kind"]].past
            if i != answer:
                wrong_events.append(event)
                for start, end in segments:  # at a time that does not touch the evidence
                    assert event["end"] <= start or event["start"] >= end, (where, event)
        own = [e["index"] for e in events if e["object"] == subject]
        if qtype == "DO":  # the subject acts once: the others did the wrong options
            assert own == [evidence["index"]] and all(e["object"] != subject for e in wrong_events), where
        elif qtype in ("TN", "TP"):  # the subject's own other event is one of the wrong options
            (other,) = set(own) - {evidence["index"]}
            assert other in {e["index"] for e in wrong_events}, where
        else:  # CW: neither the cause nor the effect
            assert not {e["index"] for e in wrong_events} & {evidence["index"], *question["reference_events"]}, where
        counted[qtype] += 1
    assert set(counted) == GENERATOR_TYPES, counted


@pytest.mark.parametrize("folder", ["tiny", "annotations_only"])
def test_questions_answer_with_the_related_event(folder: str, request):
    """Re-derive each question from the timeline and its text: the evidence is the event it asks for."""
    for row, question, record, _ in annotated_questions(request.getfixturevalue(folder)):
        events = record["events"]
        names = [o["name"] for o in record["objects"]]
        subject = question["subject"]
        (evidence,) = (events[i] for i in question["evidence_events"])
        own = [e for e in events if e["object"] == subject]
        lead_in = question["lead_in"]
        where = (row["video_id"], row["qid"], row["type"])
        assert row["question"].startswith(lead_in + " "), where
        if row["type"] == "DO":
            assert question["reference_events"] == [] and own == [evidence], where
            assert row["question"] == f"{lead_in} what did the {names[subject]} do"
            continue
        (reference,) = (events[i] for i in question["reference_events"])
        assert len(own) == 2, where  # compositional questions are about repeat actors
        if row["type"] == "CW":  # the cause is the event right before the subject's effect
            assert reference["object"] == subject and evidence["index"] == reference["index"] - 1, where
            assert evidence["object"] != subject and evidence["end"] <= reference["start"], where
            base = KIND_BY_NAME[reference["kind"]].base
            assert row["question"] == f"{lead_in} why did the {names[subject]} {base}", where
            continue
        assert reference["object"] != subject and evidence["object"] == subject, where
        relation = {"TN": "after", "TP": "before"}[row["type"]]
        text = f"{lead_in} what did the {names[subject]} do {relation} the {names[reference['object']]} "
        assert row["question"] == text + reference["text"], where
        if row["type"] == "TN":  # the subject's first event after the reference
            after = [e for e in own if e["start"] >= reference["end"]]
            assert after and after[0] == evidence, where
        else:  # its last event before
            before = [e for e in own if e["end"] <= reference["start"]]
            assert before and before[-1] == evidence, where


def test_answer_kinds_vary_within_a_video():
    """Issue 7: answer kinds are drawn per question, so no video-level label answers a video's questions."""
    for preset, seed, most in (("default", 21, 0.9), ("tiny", 22, 0.9), ("compositional", 23, 0.6)):
        videos = build_split(SyntheticConfig(preset=preset, seed=seed), "train", 300)
        distinct = [len({q.answer_kind for q in v.questions}) for v in videos]
        assert min(distinct) >= 2, (preset, Counter(distinct))
        assert np.mean([d >= 4 for d in distinct]) >= most, (preset, Counter(distinct))


@pytest.mark.parametrize("preset", ["tiny", "default", "compositional"])
def test_the_visual_cue_never_overlaps_the_evidence_of_its_question(preset: str):
    """Issue 7: one cue per question subject, outside that question's evidence, with the subject on
    screen in its normal look throughout (at every decisecond, and in every frame through the
    renderer's states)."""
    cfg = SyntheticConfig(preset=preset, seed=31)
    checked = Counter()
    for split in ("train", "test_ood"):
        for video in build_split(cfg, split, 150):
            script = video.script
            assert sorted(c.obj for c in script.cues) == list(range(6)), video.video_id
            ticks = 10 * np.arange(script.frame_count)
            for q in video.questions:
                (cue,) = (c for c in script.cues if c.obj == q.subject)
                where = (video.video_id, q.qid, q.qtype, cue, q.segments_ds)
                assert cue.colour == q.cue and cue.start_ds < cue.end_ds, where
                assert all(cue.end_ds <= start or cue.start_ds >= end for start, end in q.segments_ds), where
                if q.qtype != "CW":  # next to the evidence (the subject's own event)
                    assert any(cue.end_ds == start or cue.start_ds == end for start, end in q.segments_ds), where
                assert not any(e.overlaps(cue.start_ds, cue.end_ds) for e in script.events_of(q.subject)), where
                assert all(script.on_screen(q.subject, ds * script.fps) for ds in range(cue.start_ds, cue.end_ds))
                shown = ticks[(cue.start_ds * script.fps <= ticks) & (ticks < cue.end_ds * script.fps)]
                for cells in scene_states(script, shown):
                    assert cells[q.subject].state == "normal" and cells[q.subject].cue == q.cue, where
                checked[q.qtype] += 1
    assert set(checked) == GENERATOR_TYPES, checked


def test_every_cue_is_shown_in_some_frame():
    """A question's visual nuisance (recorded in confounders_{split}.csv and counted in the agreement
    rates) must be on screen in at least one rendered frame: frame i shows tick 10 i, the cue
    [start_ds, end_ds) covers ticks start_ds * fps <= 10 i < end_ds * fps."""
    hidden = []
    for preset, split in (("tiny", "test_ood"), ("compositional", "train")):
        for video in build_split(SyntheticConfig(preset=preset, seed=31), split, 300):
            script = video.script
            ticks = 10 * np.arange(script.frame_count)
            for cue in script.cues:
                if not np.any((cue.start_ds * script.fps <= ticks) & (ticks < cue.end_ds * script.fps)):
                    hidden.append((preset, video.video_id, script.fps, script.duration_s, cue))
    assert not hidden, hidden


# ---------------------------------------------------------------------------------------------
# Confounders


def test_confounder_files_agree_with_the_pairing(tiny: Path):
    pairing = read_json(tiny / "dataset.json")["pairing"]
    for split in SPLITS:
        columns, rows = read_csv(tiny / f"confounders_{split}.csv")
        assert columns[:2] == ["qid", "video_id"]
        records = read_json(tiny / f"events_{split}.json")
        _, qa_rows = read_csv(tiny / f"{split}.csv")
        questions = {(r["video_id"], r["qid"]): r for r in qa_rows}
        assert len(rows) == len(qa_rows)
        for row in rows:
            record = records[row["video_id"]]
            question = record["questions"][row["qid"]]
            kind = row["answer_category"]
            assert question["answer_kind"] == kind
            # The visual nuisance is the backdrop behind the question's subject.
            (cue,) = (c for c in record["cues"] if c["object"] == question["subject"])
            assert row["visual_nuisance"] == question["cue"] == cue["colour"]
            assert row["visual_agrees"] == str(int(pairing[kind]["cue"] == row["visual_nuisance"]))
            assert row["language_nuisance"] == question["lead_in"]
            assert questions[(row["video_id"], row["qid"])]["question"].startswith(row["language_nuisance"] + " ")
            assert row["language_agrees"] == str(int(pairing[kind]["lead_in"] == row["language_nuisance"]))


def test_the_dataset_card_and_json_state_the_pairing_and_agreement_rates(tiny: Path):
    info = read_json(tiny / "dataset.json")
    card = (tiny / "README.md").read_text(encoding="utf-8")
    assert info["generator_version"] == GENERATOR_VERSION and GENERATOR_VERSION.startswith("2.")
    assert info["pairing"] == {kind: {"cue": CUE_NAMES[k], "lead_in": LEAD_INS[k]} for k, kind in enumerate(KIND_NAMES)}
    assert (info["rho_visual"], info["rho_language"]) == (TINY.rho_visual, TINY.rho_language)
    assert f"rho_visual = {TINY.rho_visual}, rho_language = {TINY.rho_language}" in card
    assert "P(agree) = rho + (1 - rho) / 5" in card
    for k, kind in enumerate(EVENT_KINDS):
        assert f"| {kind.name} | {kind.past} | {CUE_NAMES[k]} | {LEAD_INS[k]} |" in card
    for split in SPLITS:
        _, rows = read_csv(tiny / f"confounders_{split}.csv")
        rates = {
            name: round(sum(int(r[f"{name}_agrees"]) for r in rows) / len(rows), 4) for name in ("visual", "language")
        }
        s = info["splits"][split]
        assert s["agreement"] == rates and s["ood"] == (split == "test_ood")
        types = [s["types"][t] for t in ("DO", "TN", "TP", "CW")]
        line = f"| {split} | {s['videos']} | {s['questions']} | " + " | ".join(map(str, types))
        assert f"{line} | {rates['visual']:.3f} | {rates['language']:.3f} |" in card.splitlines(), split


def test_expected_agreement_is_rho_plus_the_uniform_share():
    assert expected_agreement(0.0) == pytest.approx(1 / 5)  # independent, not "never paired"
    assert expected_agreement(1.0) == pytest.approx(1.0)
    assert expected_agreement(0.5) == pytest.approx(0.6)
    assert expected_agreement(0.9) == pytest.approx(0.92)


def test_iid_agreement_rates_match_rho(statistics_sample: dict):
    cfg, videos = statistics_sample["cfg"], statistics_sample["train"]
    counts = agreement_counts(videos)
    for name, rho in (("visual", cfg.rho_visual), ("language", cfg.rho_language)):
        low, high = wilson(*counts[name])
        assert low <= expected_agreement(rho) <= high, (name, counts[name], (low, high))
        assert chi2_contingency(contingency(videos, name)).pvalue < 1e-6, name


def test_ood_nuisances_are_independent_of_the_answer(statistics_sample: dict):
    """Issue 7: test_ood draws both nuisances independently of the answer, whatever rho says."""
    videos = statistics_sample["test_ood"]
    counts = agreement_counts(videos)
    for name in ("visual", "language"):
        low, high = wilson(*counts[name])
        assert low <= 1 / len(KIND_NAMES) <= high, (name, counts[name], (low, high))
        assert chi2_contingency(contingency(videos, name)).pvalue > 1e-3, name
    assert {q.lead_in for q in questions_of(videos)} == set(LEAD_INS)
    assert {q.cue for q in questions_of(videos)} == set(CUE_NAMES)


def test_rho_zero_is_independent_and_rho_one_always_pairs():
    """Issue 7: rho = 0 means "independent of the answer" (agreement 1/5, not 0); rho = 1 always pairs."""
    zero = build_split(SyntheticConfig(preset="tiny", seed=12, rho_visual=0.0, rho_language=0.0), "train", 400)
    counts = agreement_counts(zero)
    for name in ("visual", "language"):
        low, high = wilson(*counts[name])
        assert low <= expected_agreement(0.0) <= high, (name, counts[name], (low, high))
        assert chi2_contingency(contingency(zero, name)).pvalue > 1e-3, name
    always = build_split(SyntheticConfig(preset="tiny", seed=1, rho_visual=1.0, rho_language=1.0), "val", 50)
    assert all(q.cue == paired_cue(q.answer_kind) for q in questions_of(always))
    assert all(q.lead_in == paired_lead_in(q.answer_kind) for q in questions_of(always))


def without_nuisances(video):
    """A video with its nuisance values blanked: the cues' colours, the questions' lead-ins and cues."""
    script = dataclasses.replace(video.script, cues=tuple(dataclasses.replace(c, colour="") for c in video.script.cues))
    questions = tuple(
        dataclasses.replace(q, text=q.text.removeprefix(q.lead_in + " "), lead_in="", cue="") for q in video.questions
    )
    return dataclasses.replace(video, script=script, questions=questions)


def test_changing_rho_changes_only_the_nuisance_values():
    """Issue 7: a rho sweep is a controlled experiment: scripts, cue times, question bodies, options
    and answers are identical; only the nuisance values move."""
    low = SyntheticConfig(preset="tiny", seed=13, rho_visual=0.0, rho_language=0.0)
    high = dataclasses.replace(low, rho_visual=0.9, rho_language=0.9)
    train_low, train_high = build_split(low, "train", 150), build_split(high, "train", 150)
    assert [without_nuisances(v) for v in train_low] == [without_nuisances(v) for v in train_high]
    pairs = list(zip(questions_of(train_low), questions_of(train_high), strict=True))
    assert sum(a.cue != b.cue for a, b in pairs) > 0.5 * len(pairs)  # the values did move ...
    assert sum(a.lead_in != b.lead_in for a, b in pairs) > 0.5 * len(pairs)
    assert agreement_counts(train_high)["visual"][0] > 2 * agreement_counts(train_low)["visual"][0]  # ... to the pair
    # test_ood ignores rho altogether.
    assert build_split(low, "test_ood", 50) == build_split(high, "test_ood", 50)


def test_answer_positions_and_kinds_are_uniform(statistics_sample: dict):
    questions = questions_of(statistics_sample["train"])
    positions = Counter(q.answer for q in questions)
    assert chisquare([positions[i] for i in range(5)]).pvalue > 1e-3, positions
    kinds = Counter(q.answer_kind for q in questions)
    assert chisquare([kinds[k] for k in KIND_NAMES]).pvalue > 1e-3, kinds


def test_every_text_is_written_unquoted(annotations_only: Path):
    """The NExT-GQA readers split on commas: no text may need quoting (the CSVs re-read identically)."""
    for split in SPLITS:
        raw = (annotations_only / f"{split}.csv").read_text(encoding="utf-8")
        assert '"' not in raw
        rows = list(csv.reader(io.StringIO(raw)))
        assert all(len(row) == 13 for row in rows) and len(rows) > 1
