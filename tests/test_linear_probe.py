"""The linear probe of the visual features (benchmarks/linear_probe.py): frame labels on a hand-made
timeline and against the renderer, the probe on separable vs random features, and a tiny end-to-end run."""

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
from pipeline.data.synthetic import build_dataset
from pipeline.data.synthetic.render import frame_states
from pipeline.data.synthetic.vocabulary import FLASH_RGB, PALETTE, SIZE_BIG, SIZE_NORMAL, SIZE_SMALL
from pipeline.data.synthetic.writer import events_json
from pipeline.errors import PipelineError

# Objects in cells right (0), left (1), middle (2); 4 s at 10 fps (frames 0..39).
TIMELINE = {
    "duration": 4,
    "fps": 10,
    "background": "navy",
    "objects": [
        {"index": 0, "colour": "red", "cell": 2},
        {"index": 1, "colour": "blue", "cell": 0},
        {"index": 2, "colour": "green", "cell": 1},
    ],
    "events": [
        {"object": 0, "kind": "grow", "colour": None, "start": 0.5, "end": 1.0},
        {"object": 1, "kind": "recolour", "colour": "yellow", "start": 0.8, "end": 1.5},
        {"object": 2, "kind": "disappear", "colour": None, "start": 1.0, "end": 2.0},
        {"object": 0, "kind": "flash", "colour": None, "start": 2.0, "end": 2.5},
        {"object": 1, "kind": "shrink", "colour": None, "start": 3.0, "end": 3.5},
    ],
}

# t -> (slot left, middle, right), (colour left, middle, right), kinds under way anywhere
GOLDEN = {
    0.0: (("normal", "normal", "normal"), ("blue", "green", "red"), set()),
    0.44: (("normal", "normal", "normal"), ("blue", "green", "red"), set()),  # shows frame 4 (0.4 s)
    0.46: (("normal", "normal", "grown"), ("blue", "green", "red"), {"grow"}),  # frame 5: start is inclusive
    0.9: (("recoloured", "normal", "grown"), ("yellow", "green", "red"), {"grow", "recolour"}),
    1.0: (("recoloured", "gone", "normal"), ("yellow", "none", "red"), {"recolour", "disappear"}),  # end exclusive
    2.0: (("normal", "normal", "flashing"), ("blue", "green", "white"), {"flash"}),
    3.2: (("shrunk", "normal", "normal"), ("blue", "green", "red"), {"shrink"}),
    9.0: (("normal", "normal", "normal"), ("blue", "green", "red"), set()),  # past the end: the last frame
}


@pytest.mark.parametrize("t", sorted(GOLDEN))
def test_frame_labels_match_the_hand_made_timeline(t: float):
    slots, colours, kinds = GOLDEN[t]
    labels = lp.frame_labels(TIMELINE, t)
    assert set(labels) == set(lp.TASKS)
    assert (labels["slot_left"], labels["slot_middle"], labels["slot_right"]) == slots
    assert (labels["colour_left"], labels["colour_middle"], labels["colour_right"]) == colours
    assert {k for k in ("grow", "shrink", "flash", "recolour", "disappear") if labels[f"any_{k}"] == "yes"} == kinds
    assert labels["background"] == "navy"
    for task, label in labels.items():
        assert label in lp.TASKS[task], task


def test_frame_labels_agree_with_the_renderer_on_generated_videos():
    """Every frame of generated tiny videos: the label says what `render.frame_states` draws."""
    cfg = SyntheticConfig(preset="tiny")
    dataset = build_dataset(cfg, total_videos=4)
    cell_size = min(cfg.width / 3, cfg.height)
    size_of_state = {"normal": SIZE_NORMAL, "grown": SIZE_BIG, "shrunk": SIZE_SMALL}
    checked = 0
    for split, videos in dataset.videos.items():
        records = json.loads(events_json(dataset, split))
        for video in videos:
            record = records[video.video_id]
            states = frame_states(video.script, cfg.width, cfg.height)
            for i, frame in enumerate(states):
                labels = lp.frame_labels(record, i / video.script.fps)
                for obj, (visible, rgb, radius) in zip(video.script.objects, frame, strict=True):
                    slot, look = labels[f"slot_{lp.SLOTS[obj.cell]}"], labels[f"colour_{lp.SLOTS[obj.cell]}"]
                    assert visible == (slot != "gone") == (look != "none")
                    if visible:
                        assert rgb == (FLASH_RGB if look == "white" else PALETTE[look])
                        assert (slot == "flashing") == (look == "white")
                        if slot in size_of_state:
                            assert radius == max(2, round(size_of_state[slot] * cell_size))
                    checked += 1
    assert checked > 1000


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


def _write_synthetic(tmp_path: Path, T: int = 16) -> tuple[Path, Path]:
    """Tiny benchmark sidecars, and features that encode the background and the left slot's state only."""
    dataset = build_dataset(SyntheticConfig(preset="tiny"))
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
            onehot = [
                np.eye(len(lp.TASKS[task]))[[lp.TASKS[task].index(v) for v in labels[task]]]
                for task in ("background", "slot_left")
            ]
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
    assert set(report["tasks"]) == set(lp.TASKS)
    assert report["tasks"]["background"]["accuracy"] == 1.0
    assert report["tasks"]["slot_left"]["balanced_accuracy"] > 0.95
    assert report["tasks"]["slot_right"]["balanced_accuracy"] < 0.7  # not in the features
    assert set(report["tasks"]["background"]["accuracy_by_group"]) == {"test_iid", "test_ood"}
    lp.main(["--features", str(features), "--synthetic", str(synthetic)])
    table = capsys.readouterr().out
    assert "slot_left" in table and "per-class recall" in table


def test_missing_timelines_are_a_user_error(tmp_path: Path, capsys):
    features, _ = _write_synthetic(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        lp.main(["--features", str(features), "--synthetic", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "events_train.json not found" in capsys.readouterr().err
