"""The synthetic confounded VideoQG benchmark (stage `generate`).

The tiny preset is rendered once per module (and once more for determinism); the confounder
statistics use the annotation-only builder on a few hundred videos, since rendering is the slow part.

Statistics (all at a fixed seed, so they are deterministic; the thresholds are 99.9 % levels):
- agreement rates: the visual nuisance is drawn once per video, so its agreements are Bernoulli(rho)
  per *video*; the linguistic one per *question*. Each count's Wilson 99.9 % interval must contain
  rho (train) or 1/5 (test_ood, where the nuisance is uniform over 5 values).
- independence in test_ood: a chi-square test of the 5x5 table (nuisance value x answer kind, one
  count per video) must not reject (p > 0.001); the same test on train must reject (p < 1e-6), which
  shows the sample is big enough for the test to see a correlation.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import decord
import numpy as np
import pytest
from scipy.stats import chi2_contingency, chisquare

from pipeline.config import Params, PathsConfig, SyntheticConfig
from pipeline.data.synthetic import SPLITS, build_split, get_preset
from pipeline.data.synthetic.render import NUM_CELLS, object_centre
from pipeline.data.synthetic.timeline import SceneObject, min_event_ds
from pipeline.data.synthetic.vocabulary import (
    BACKGROUND_NAMES,
    BACKGROUNDS,
    COLOURS,
    FLASH_RGB,
    KIND_NAMES,
    LEAD_INS,
    PALETTE,
    RECOLOURS,
    paired_background,
    paired_lead_in,
)
from pipeline.errors import PipelineError
from stages.generate import generate, run

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = SyntheticConfig(preset="tiny", seed=3)
NEXTGQA_TYPES = {"CW", "CH", "TN", "TC", "TP", "DC", "DL", "DO"}
Z_999 = 3.2905  # two-sided 99.9 % normal quantile


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "synthetic"
    generate(out, TINY, None)
    return out


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def annotation_digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def wilson(successes: int, n: int, z: float = Z_999) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


# ---------------------------------------------------------------------------------------------
# Determinism and presets


def test_same_params_give_byte_identical_files(tiny: Path, tmp_path: Path):
    # The second run goes through the stage entry point, as `dvc repro` does.
    params = Params(paths=PathsConfig(synthetic=str(tmp_path / "again")), synthetic=TINY)
    run(params)
    again = tmp_path / "again"
    assert annotation_digests(again) == annotation_digests(tiny)
    videos = sorted((tiny / "videos").rglob("*.mp4"))
    assert len(videos) == get_preset("tiny").total_videos == 16
    # The mp4v encoder is deterministic too: the videos are byte-identical.
    for video in videos:
        assert video.read_bytes() == (again / video.relative_to(tiny)).read_bytes(), video.name
    # ... and a rerun over an existing benchmark replaces it (no stale files).
    (again / "videos" / "stale.mp4").write_bytes(b"x")
    generate(again, TINY, None)
    assert not (again / "videos" / "stale.mp4").exists()


def test_annotations_do_not_depend_on_the_hash_seed(tiny: Path, tmp_path: Path):
    script = (
        "import sys; from pathlib import Path; from pipeline.config import SyntheticConfig; "
        "from pipeline.data.synthetic import build_dataset, write_annotations; "
        "write_annotations(build_dataset(SyntheticConfig(preset='tiny', seed=3)), Path(sys.argv[1]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO_ROOT, env=env, check=True)
    assert annotation_digests(tmp_path) == annotation_digests(tiny)


def test_another_seed_gives_another_benchmark(tiny: Path, tmp_path: Path):
    from pipeline.data.synthetic import build_dataset, write_annotations

    write_annotations(build_dataset(dataclasses.replace(TINY, seed=4)), tmp_path)
    assert (tmp_path / "train.csv").read_bytes() != (tiny / "train.csv").read_bytes()


def test_split_sizes_follow_the_preset_and_the_override():
    default = get_preset("default")
    assert default.split_sizes(None) == {"train": 150, "val": 30, "test_iid": 30, "test_ood": 30}
    assert get_preset("large").total_videos == 4 * default.total_videos
    # 100 * (150, 30, 30, 30) / 240 = (62.5, 12.5, 12.5, 12.5): equal remainders go to the first splits.
    assert default.split_sizes(100) == {"train": 63, "val": 13, "test_iid": 12, "test_ood": 12}
    assert default.split_sizes(4) == {"train": 1, "val": 1, "test_iid": 1, "test_ood": 1}
    for total in (5, 17, 241, 1000):
        assert sum(default.split_sizes(total).values()) == total
    with pytest.raises(PipelineError, match="--videos 3 is too few"):
        default.split_sizes(3)
    with pytest.raises(PipelineError, match="synthetic.preset"):
        get_preset("huge")


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
            assert 0 <= int(row["answer"]) <= 4 and row["type"] in {"CW", "TN", "TP", "TC"}
            assert len({row[f"a{i}"] for i in range(5)}) == 5
            assert (int(row["width"]), int(row["height"])) == (TINY.width, TINY.height)
            assert int(row["frame_count"]) == round(gsub[row["video_id"]]["duration"] * gsub[row["video_id"]]["fps"])
            assert gsub[row["video_id"]]["location"][row["qid"]]  # every question is grounded
        assert {(v, q) for v, e in gsub.items() for q in e["location"]} == {(r["video_id"], r["qid"]) for r in rows}
        assert set(gsub) <= set(video_map)
        total += len(rows)
    info = read_json(tiny / "dataset.json")
    assert info["preset"] == "tiny" and info["seed"] == 3 and info["rho_visual"] == TINY.rho_visual
    assert sum(s["questions"] for s in info["splits"].values()) == total
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
        assert [list(s) for s in q.segments] == gsub[row["video_id"]]["location"][row["qid"]]
    assert all(path.exists() for path in dataset.video_paths.values())


# ---------------------------------------------------------------------------------------------
# Videos


def test_videos_decode_with_the_annotated_frame_count_fps_and_size(tiny: Path):
    video_map = read_json(tiny / "map_vid_vidorID.json")
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
            assert get_preset("tiny").min_duration_s <= entry["duration"] <= get_preset("tiny").max_duration_s
            checked += 1
    assert checked == 16


def colour_pixels(frame: np.ndarray, cell: int, rgb: tuple[int, int, int], tolerance: int = 60) -> int:
    """Pixels of `rgb` (within `tolerance` per channel, mp4v is lossy) in the object's cell."""
    width = frame.shape[1]
    region = frame[:, round(cell * width / NUM_CELLS) : round((cell + 1) * width / NUM_CELLS)].astype(int)
    return int((np.abs(region - np.array(rgb)).max(axis=-1) <= tolerance).sum())


def test_frames_show_the_timeline(tiny: Path):
    """At the middle of every event its object looks as the event says, relative to its own look."""
    video_map = read_json(tiny / "map_vid_vidorID.json")
    seen = Counter()
    for split in SPLITS:
        for video_id, record in read_json(tiny / f"events_{split}.json").items():
            reader = decord.VideoReader(str(tiny / "videos" / f"{video_map[video_id]}.mp4"))
            fps = record["fps"]
            background = BACKGROUNDS[record["background"]]
            first = reader[0].asnumpy()
            assert np.abs(first[1, 1].astype(int) - background).max() <= 12  # the corner shows the nuisance
            for obj in record["objects"]:
                scene_obj = SceneObject(obj["index"], obj["colour"], obj["shape"], obj["cell"], obj["y_offset"])
                events = [e for e in record["events"] if e["object"] == obj["index"]]
                # Its own look: a frame at which none of its events runs.
                idle = next(i for i in range(len(reader)) if not any(e["start"] <= i / fps < e["end"] for e in events))
                own = COLOURS[obj["colour"]]
                own_area = colour_pixels(reader[idle].asnumpy(), obj["cell"], own)
                assert own_area > 50, (video_id, obj)
                for event in events:
                    frame = reader[int((event["start"] + event["end"]) / 2 * fps)].asnumpy()
                    area = colour_pixels(frame, obj["cell"], own)
                    x, y = object_centre(scene_obj, TINY.width, TINY.height)
                    centre = frame[y, x].astype(int)
                    kind = event["kind"]
                    if kind == "grow":
                        assert area > 2.5 * own_area, (video_id, event)
                    elif kind == "shrink":
                        assert 0 < area < 0.4 * own_area, (video_id, event)
                    elif kind == "flash":
                        assert area < 0.1 * own_area and np.abs(centre - FLASH_RGB).max() <= 40
                    elif kind == "recolour":
                        new = PALETTE[event["colour"]]
                        assert area < 0.1 * own_area and np.abs(centre - new).max() <= 60, (video_id, event)
                        assert colour_pixels(frame, obj["cell"], new) > 0.5 * own_area
                    elif kind == "disappear":
                        assert area < 0.1 * own_area and np.abs(centre - background).max() <= 30
                    seen[kind] += 1
    assert set(seen) == set(KIND_NAMES)


# ---------------------------------------------------------------------------------------------
# Questions, evidence and options


def test_segments_lie_inside_the_video(tiny: Path):
    for split in SPLITS:
        for entry in read_json(tiny / f"gsub_{split}.json").values():
            for segments in entry["location"].values():
                for start, end in segments:
                    assert 0 <= start < end <= entry["duration"]
                # Evidence is a modest part of the video, so grounding matters.
                assert sum(e - s for s, e in segments) <= 0.4 * entry["duration"]


def test_wrong_options_are_events_of_the_same_video_outside_the_evidence(tiny: Path):
    counted = Counter()
    for split in SPLITS:
        _, rows = read_csv(tiny / f"{split}.csv")
        gsub = read_json(tiny / f"gsub_{split}.json")
        records = read_json(tiny / f"events_{split}.json")
        for row in rows:
            record = records[row["video_id"]]
            question = record["questions"][row["qid"]]
            events = record["events"]
            names = [o["name"] for o in record["objects"]]
            subject = question["subject"]
            segments = gsub[row["video_id"]]["location"][row["qid"]]
            answer = int(row["answer"])
            evidence = [events[i] for i in question["option_events"][answer]]
            assert question["option_events"][answer] == question["evidence_events"]

            def named(event, causal=row["type"] == "CW", names=names):  # the option text an event stands for
                return f"because the {names[event['object']]} {event['text']}" if causal else event["text"]

            assert {named(e) for e in evidence} == {row[f"a{answer}"]}
            assert all(e["kind"] == question["answer_kind"] for e in evidence)
            if row["type"] == "CW":
                effect = events[question["reference_events"][0]]
                assert [evidence[0]["index"], effect["index"]] in record["causal_links"]
                assert segments == [[evidence[0]["start"], effect["end"]]]
                assert 0 <= effect["start"] - evidence[0]["end"] <= 0.2 + 1e-9
            else:
                assert all(e["object"] == subject for e in evidence)
                assert segments == sorted([e["start"], e["end"]] for e in evidence)
            for option in range(5):
                if option == answer:
                    continue
                (index,) = question["option_events"][option]
                event = events[index]
                assert named(event) == row[f"a{option}"]
                assert event["kind"] != question["answer_kind"]
                # X itself did it (temporal), or another object did (causal) ...
                assert (event["object"] == subject) == (row["type"] != "CW")
                # ... at a time that does not touch the evidence.
                for start, end in segments:
                    assert event["end"] <= start or event["start"] >= end, (row, event)
                counted[row["type"]] += 1
    assert all(counted[t] > 0 for t in ("TN", "TP", "TC")), counted


def test_temporal_questions_answer_with_the_related_event(tiny: Path):
    """Re-derive after / before / while from the timeline: the evidence event is the related one."""
    for split in SPLITS:
        _, rows = read_csv(tiny / f"{split}.csv")
        records = read_json(tiny / f"events_{split}.json")
        for row in rows:
            if row["type"] == "CW":
                continue
            record = records[row["video_id"]]
            question = record["questions"][row["qid"]]
            events = record["events"]
            references = [events[i] for i in question["reference_events"]]
            max_gap = record["duration"] / 10 + 1e-9
            subject_name = record["objects"][question["subject"]]["name"]
            assert row["question"].split(" what did the ")[1].startswith(subject_name)
            for ref, evidence in zip(references, (events[i] for i in question["evidence_events"]), strict=True):
                assert ref["object"] != question["subject"]
                if row["type"] == "TN":
                    assert 0 <= evidence["start"] - ref["end"] <= max_gap
                elif row["type"] == "TP":
                    assert 0 <= ref["start"] - evidence["end"] <= max_gap
                else:
                    overlap = min(ref["end"], evidence["end"]) - max(ref["start"], evidence["start"])
                    shorter = min(ref["end"] - ref["start"], evidence["end"] - evidence["start"])
                    assert overlap >= shorter / 2 - 1e-9


def test_timelines_keep_their_design_promises():
    videos = build_split(SyntheticConfig(preset="default", seed=5), "train", 40)
    for video in videos:
        script = video.script
        for obj in script.objects:
            own = script.events_of(obj.index)
            assert {e.kind for e in own} == set(KIND_NAMES)  # every object does every kind
            for a, b in pairwise(own):
                assert b.start_ds >= a.end_ds  # one thing at a time
        # Every event spans >= 2 of 32 uniformly sampled frames.
        assert all(e.length_ds >= min_event_ds(script.duration_ds) for e in script.events)
        assert all(e.length_ds > 2 * script.duration_ds / 32 for e in script.events)
        assert get_preset("default").min_questions <= len(video.questions) <= get_preset("default").max_questions
        assert {q.answer_kind for q in video.questions} == {video.target_kind}
        names = {o.colour for o in script.objects}
        assert all(e.colour not in names for e in script.events if e.kind == "recolour")
        assert all(e.colour in RECOLOURS for e in script.events if e.kind == "recolour")


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
            kind = row["answer_category"]
            assert record["questions"][row["qid"]]["answer_kind"] == kind == record["target_kind"]
            assert row["visual_nuisance"] == record["background"]
            assert row["visual_agrees"] == str(int(pairing[kind]["background"] == row["visual_nuisance"]))
            assert questions[(row["video_id"], row["qid"])]["question"].startswith(row["language_nuisance"] + " ")
            assert row["language_agrees"] == str(int(pairing[kind]["lead_in"] == row["language_nuisance"]))


@pytest.fixture(scope="module")
def statistics_sample() -> dict:
    """400 train and 400 test_ood videos, annotation-only, with two different rhos."""
    cfg = SyntheticConfig(preset="tiny", seed=11, rho_visual=0.6, rho_language=0.8)
    return {split: build_split(cfg, split, 400) for split in ("train", "test_ood")} | {"cfg": cfg}


def agreement_counts(videos) -> dict[str, tuple[int, int]]:
    visual = [v.background == paired_background(v.target_kind) for v in videos]
    language = [q.lead_in == paired_lead_in(q.answer_kind) for v in videos for q in v.questions]
    return {"visual": (sum(visual), len(visual)), "language": (sum(language), len(language))}


def contingency(videos) -> np.ndarray:
    table = np.zeros((len(BACKGROUND_NAMES), len(KIND_NAMES)), int)
    for v in videos:
        table[BACKGROUND_NAMES.index(v.background), KIND_NAMES.index(v.target_kind)] += 1
    return table


def test_iid_agreement_rates_match_rho(statistics_sample: dict):
    cfg = statistics_sample["cfg"]
    counts = agreement_counts(statistics_sample["train"])
    for name, rho in (("visual", cfg.rho_visual), ("language", cfg.rho_language)):
        low, high = wilson(*counts[name])
        assert low <= rho <= high, (name, counts[name], (low, high))
    # Per question the visual rate is rho too (every question of a video shares its answer kind).
    videos = statistics_sample["train"]
    per_question = [v.background == paired_background(q.answer_kind) for v in videos for q in v.questions]
    assert abs(np.mean(per_question) - cfg.rho_visual) < 0.06
    assert chi2_contingency(contingency(videos)).pvalue < 1e-6


def test_ood_nuisances_are_independent_of_the_answer(statistics_sample: dict):
    videos = statistics_sample["test_ood"]
    counts = agreement_counts(videos)
    for name in ("visual", "language"):
        low, high = wilson(*counts[name])
        assert low <= 1 / len(KIND_NAMES) <= high, (name, counts[name], (low, high))
    assert chi2_contingency(contingency(videos)).pvalue > 1e-3
    lead_ins = Counter(q.lead_in for v in videos for q in v.questions)
    assert set(lead_ins) == set(LEAD_INS)


def test_answer_positions_are_uniform(statistics_sample: dict):
    answers = Counter(q.answer for v in statistics_sample["train"] for q in v.questions)
    counts = [answers[i] for i in range(5)]
    assert chisquare(counts).pvalue > 1e-3, counts
    kinds = Counter(v.target_kind for v in statistics_sample["train"])
    assert chisquare([kinds[k] for k in KIND_NAMES]).pvalue > 1e-3, kinds


def test_rho_extremes_plant_exactly():
    always = build_split(SyntheticConfig(preset="tiny", seed=1, rho_visual=1.0, rho_language=0.0), "val", 30)
    assert all(v.background == paired_background(v.target_kind) for v in always)
    assert all(q.lead_in != paired_lead_in(q.answer_kind) for v in always for q in v.questions)
