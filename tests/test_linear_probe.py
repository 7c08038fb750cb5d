"""The linear probe of the visual features (benchmarks/linear_probe.py): frame labels on a hand-made
events record and on generated timelines, the probe on separable vs random features, and a tiny
end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from benchmarks import linear_probe as lp
from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import write_table
from pipeline.config import SyntheticConfig
from pipeline.data.synthetic import build_dataset, get_preset
from pipeline.data.synthetic.vocabulary import COLOURS, KIND_BY_NAME, KIND_NAMES, STATES
from pipeline.data.synthetic.writer import events_json
from pipeline.errors import PipelineError


def _object(index: int, colour: str, shape: str, cell: int) -> dict:
    return {
        "index": index,
        "name": f"{colour} {shape}",
        "colour": colour,
        "shape": shape,
        "cell": cell,
        "y_offset": 0.0,
    }


def _event(index: int, obj: int, kind: str, start: float, end: float) -> dict:
    return {"index": index, "object": obj, "kind": kind, "start": start, "end": end, "text": KIND_BY_NAME[kind].past}


# An `events_{split}.json` entry in generator-2 format: 6 s at 10 fps (frames 0..59); every object is on
# screen from 0.4 s before each of its events to 0.4 s after: red [0, 1.2) and [2.2, 3.6), green [0.6, 2.0),
# blue [1.4, 2.8), yellow [3.0, 4.4), purple [3.8, 5.2), cyan [4.6, 6.0); red and purple share cell 0,
# green and cyan cell 1, never at the same time.
RECORD = {
    "duration": 6,
    "fps": 10,
    "pad": 0.4,
    "objects": [
        _object(0, "red", "circle", 0),
        _object(1, "green", "square", 1),
        _object(2, "blue", "triangle", 2),
        _object(3, "yellow", "circle", 3),
        _object(4, "purple", "square", 0),
        _object(5, "cyan", "triangle", 1),
    ],
    "events": [
        _event(0, 0, "grow", 0.2, 0.8),
        _event(1, 1, "shrink", 1.0, 1.6),
        _event(2, 2, "glow", 1.8, 2.4),
        _event(3, 0, "pale", 2.6, 3.2),
        _event(4, 3, "split", 3.4, 4.0),
        _event(5, 4, "shrink", 4.2, 4.8),
        _event(6, 5, "grow", 5.0, 5.6),
    ],
    "cues": [
        {"object": 0, "colour": "navy", "start": 0.8, "end": 1.2},
        {"object": 3, "colour": "plum", "start": 3.0, "end": 3.4},
    ],
    "questions": {
        "0": {
            "type": "DO",
            "subject": 3,
            "answer_kind": "split",
            "option_kinds": ["grow", "shrink", "glow", "pale", "split"],
            "cue": "plum",
            "lead_in": "in the scene",
            "reference_events": [],
            "evidence_events": [4],
            "option_events": [[0], [1], [2], [3], [4]],
        }
    },
}

# t -> (red, green, blue, yellow, purple, cyan), the event under way, cue shown. A time shows frame rint(t * fps).
A = "absent"
GOLDEN = {
    -1.0: (("normal", A, A, A, A, A), "none", "no"),  # before the start: the first frame
    0.0: (("normal", A, A, A, A, A), "none", "no"),
    0.2: (("big", A, A, A, A, A), "grow", "no"),  # start inclusive
    0.6: (("big", "normal", A, A, A, A), "grow", "no"),  # green comes on screen 0.4 s before its event
    0.8: (("normal", "normal", A, A, A, A), "none", "yes"),  # end exclusive; red's backdrop
    0.84: (("normal", "normal", A, A, A, A), "none", "yes"),  # shows frame 8
    1.16: ((A, "small", A, A, A, A), "shrink", "no"),  # shows frame 12: red and its cue have gone
    2.0: ((A, A, "glowing", A, A, A), "glow", "no"),
    2.9: (("pale", A, A, A, A, A), "pale", "no"),  # red's second event
    3.3: (("normal", A, A, "normal", A, A), "none", "yes"),  # yellow's backdrop
    3.7: ((A, A, A, "split", A, A), "split", "no"),
    4.5: ((A, A, A, A, "small", A), "shrink", "no"),
    5.3: ((A, A, A, A, A, "big"), "grow", "no"),
    5.9: ((A, A, A, A, A, "normal"), "none", "no"),
    9.0: ((A, A, A, A, A, "normal"), "none", "no"),  # past the end: the last frame
}
SLOT_ORDER = ("red", "green", "blue", "yellow", "purple", "cyan")


def test_the_tasks():
    assert set(lp.TASKS) == {f"slot_{c}" for c in COLOURS} | {"event", "cue_shown"}
    assert set(lp.TASKS["slot_red"]) == {"absent", "normal", "big", "small", "glowing", "pale", "split"}
    assert lp.TASKS["event"] == ("none", *KIND_NAMES) and lp.TASKS["cue_shown"] == ("no", "yes")


@pytest.mark.parametrize("t", sorted(GOLDEN))
def test_frame_labels_match_the_hand_made_record(t: float):
    slots, event, cue = GOLDEN[t]
    labels = lp.frame_labels(RECORD, t)
    assert set(labels) == set(lp.TASKS)
    assert tuple(labels[f"slot_{colour}"] for colour in SLOT_ORDER) == slots
    assert (labels["event"], labels["cue_shown"]) == (event, cue)
    for task, label in labels.items():
        assert label in lp.TASKS[task], task


def expected_labels(record: dict, frame: int) -> dict[str, str]:
    """Labels of frame `frame` worked out from the record's seconds (independently of the renderer)."""
    fps, pad = record["fps"], round(record["pad"] * 10)
    tick = 10 * frame  # deciseconds x fps

    def ds(seconds: float) -> int:
        return round(seconds * 10)

    labels = {"event": "none", "cue_shown": "no"}
    for obj in record["objects"]:
        state = "absent"
        for e in (e for e in record["events"] if e["object"] == obj["index"]):
            if ds(e["start"]) * fps <= tick < ds(e["end"]) * fps:
                state = KIND_BY_NAME[e["kind"]].state
                labels["event"] = e["kind"]
            elif (ds(e["start"]) - pad) * fps <= tick < (ds(e["end"]) + pad) * fps and state == "absent":
                state = "normal"
        labels[f"slot_{obj['colour']}"] = state
    if any(ds(c["start"]) * fps <= tick < ds(c["end"]) * fps for c in record["cues"]):
        labels["cue_shown"] = "yes"
    return labels


def test_frame_labels_follow_generated_timelines():
    """Every frame of generated tiny videos, and the frames the features sample: the label says what the
    record says, and `label_frames` lays them out video-major."""
    dataset = build_dataset(SyntheticConfig(preset="tiny", seed=4))
    seen = {task: set() for task in lp.TASKS}
    for split, videos in dataset.videos.items():
        records = json.loads(events_json(dataset, split))
        for video in videos:
            record = records[video.video_id]
            for frame in range(video.script.frame_count):
                labels = lp.frame_labels(record, frame / record["fps"])
                assert labels == expected_labels(record, frame), (video.video_id, frame)
                for task, label in labels.items():
                    seen[task].add(label)
        ids = [v.video_id for v in videos]
        T = 16
        timestamps = np.stack([(np.arange(T) + 0.5) * records[vid]["duration"] / T for vid in ids])  # (N, T)
        labels = lp.label_frames(records, ids, timestamps)
        for task, values in labels.items():
            assert values.shape == (len(ids) * T,)
            expected = [
                expected_labels(records[vid], int(np.rint(t * records[vid]["fps"])))[task]
                for vid, times in zip(ids, timestamps, strict=True)
                for t in times
            ]
            assert values.tolist() == expected, task
    assert seen["slot_red"] == {"absent", *STATES} and seen["event"] == set(lp.TASKS["event"])
    assert seen["cue_shown"] == {"no", "yes"}


def _blobs(n: int, classes: tuple[str, ...], D: int, seed: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """n frames (n, D) around one centre per class (5 apart), with labels (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(len(classes), size=n)
    x = 5.0 * np.eye(len(classes), D)[y] + spread * rng.standard_normal((n, D))
    return x, np.array(classes)[y]


def test_probe_on_separable_features_is_near_perfect():
    classes = ("a", "b", "c", "d")
    x, y = _blobs(400, classes, D=12, seed=0, spread=1.0)
    xs, ys = _blobs(100, classes, D=12, seed=1, spread=1.0)
    xt, yt = _blobs(300, classes, D=12, seed=2, spread=1.0)
    r = lp.probe(x, y, xt, yt, classes, c_grid=(0.1, 1.0), select=(xs, ys), groups=np.repeat(["g1", "g2"], 150))
    assert r.accuracy > 0.97 and r.balanced_accuracy > 0.97 and r.well_above_chance
    assert all(v > 0.9 for v in r.recall.values())
    assert r.chance == 0.25 and r.C in (0.1, 1.0)
    assert set(r.accuracy_by_group) == {"g1", "g2"}
    assert np.trace(np.array(r.confusion)) == round(r.accuracy * 300)
    assert sum(map(sum, r.confusion)) == r.n_test == 300


def test_probe_on_random_features_is_no_better_than_the_majority():
    rng = np.random.default_rng(0)
    classes = ("common", "rare", "rarer")
    p = [0.7, 0.2, 0.1]
    y, yt = rng.choice(classes, size=600, p=p), rng.choice(classes, size=600, p=p)
    x, xt = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    r = lp.probe(x, y, xt, yt, classes)
    assert r.majority_class == "common"
    assert r.majority_accuracy == pytest.approx(np.mean(yt == "common"))
    assert r.accuracy <= r.majority_accuracy + 0.03
    assert r.balanced_accuracy < r.chance + 0.1 and not r.well_above_chance


def test_probe_refuses_a_single_training_class():
    x = np.zeros((10, 3))
    with pytest.raises(PipelineError, match="one class"):
        lp.probe(x, np.array(["a"] * 10), x, np.array(["a"] * 10), ("a", "b"))


ENCODED = ("cue_shown", "slot_red")  # the tasks the fake features of `_write_synthetic` encode


def _write_synthetic(tmp_path: Path, T: int = 16) -> tuple[Path, Path]:
    """Benchmark sidecars of 40 tiny-preset videos, and features that encode `ENCODED` only (plus noise)."""
    dataset = build_dataset(SyntheticConfig(preset="tiny"), total_videos=40)
    synthetic = tmp_path / "synthetic"
    synthetic.mkdir()
    rng = np.random.default_rng(0)
    ids, times, feats = [], [], []
    for split, videos in dataset.videos.items():
        records = json.loads(events_json(dataset, split))
        (synthetic / f"events_{split}.json").write_text(json.dumps(records))
        for video in videos:
            t = (np.arange(T) + 0.5) * video.script.duration_s / T
            labels = lp.label_frames(records, [video.video_id], t[None])
            onehot = [np.eye(len(lp.TASKS[task]))[[lp.TASKS[task].index(v) for v in labels[task]]] for task in ENCODED]
            feats.append(np.hstack([*onehot, rng.standard_normal((T, 4))]))
            ids.append(video.video_id)
            times.append(t.tolist())
    D = feats[0].shape[1]
    table = pa.table(
        {
            "video_id": ids,
            "frame_indices": [list(range(T))] * len(ids),
            "timestamps": times,
            "features": np.stack(feats).astype(np.float32).tolist(),
        }
    )
    meta = {
        "artifact": "visual_features",
        "model": "fake",
        "pretrained": "none",
        "num_frames": T,
        "dim": D,
        "dtype": "float32",
    }
    write_table(table, tmp_path / "visual.parquet", schemas.visual_features(T, D), meta)
    return tmp_path / "visual.parquet", synthetic


def test_end_to_end_on_a_tiny_benchmark(tmp_path: Path, capsys):
    features, synthetic = _write_synthetic(tmp_path)
    lp.main(["--features", str(features), "--synthetic", str(synthetic), "--json"])
    report = json.loads(capsys.readouterr().out)
    tasks = report["tasks"]
    assert set(tasks) == set(lp.TASKS) and report["model"] == "fake" and report["num_frames"] == 16
    assert tasks["cue_shown"]["accuracy"] == 1.0 and tasks["cue_shown"]["well_above_chance"]
    assert tasks["slot_red"]["balanced_accuracy"] > 0.95 and tasks["slot_red"]["well_above_chance"]
    for task in ("slot_green", "slot_blue", "event"):  # not in the features
        assert not tasks[task]["well_above_chance"], (task, tasks[task]["balanced_accuracy"])
        assert tasks[task]["balanced_accuracy"] < 0.5, (task, tasks[task]["balanced_accuracy"])
    assert set(tasks["cue_shown"]["accuracy_by_group"]) == {"test_iid", "test_ood"}
    sizes = get_preset("tiny").split_sizes(40)
    assert tasks["event"]["n_test"] == 16 * (sizes["test_iid"] + sizes["test_ood"])  # video-disjoint test frames
    assert tasks["event"]["n_train"] == 16 * sizes["train"]
    lp.main(["--features", str(features), "--synthetic", str(synthetic)])
    table = capsys.readouterr().out
    assert "slot_red" in table and "per-class recall" in table


def test_missing_timelines_are_a_user_error(tmp_path: Path, capsys):
    features, _ = _write_synthetic(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        lp.main(["--features", str(features), "--synthetic", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "events_train.json not found" in capsys.readouterr().err
