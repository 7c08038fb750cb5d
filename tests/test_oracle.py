"""The synthetic benchmark's oracle frame features (pipeline/data/synthetic/oracle.py) and the readers of
the generator's own records (pipeline/data/synthetic/records.py): golden values on a hand-made script,
agreement with the renderer's scene states, and an exact round trip through `events_{split}.json`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import SyntheticConfig
from pipeline.data.synthetic import SPLITS, build_dataset, write_annotations
from pipeline.data.synthetic.oracle import ORACLE_DIM, SLOT_GROUPS, SLOT_WIDTH, feature_names, oracle_features
from pipeline.data.synthetic.records import read_question_nuisances, read_scripts, script_from_record
from pipeline.data.synthetic.render import scene_states
from pipeline.data.synthetic.timeline import Cue, Event, SceneObject, VideoScript
from pipeline.data.synthetic.vocabulary import (
    COLOURS,
    CUE_NAMES,
    KIND_BY_NAME,
    SHAPES,
    STATES,
    paired_cue,
    paired_lead_in,
)
from pipeline.data.video import uniform_frame_indices
from pipeline.errors import PipelineError

# Object indices are not colour slots on purpose: slot k is "the <k-th colour of COLOURS> object"
# (red 0, green 1, blue 2, yellow 3, purple 4, cyan 5), whatever the object's index.
# 6 s at 10 fps (frames 0..59); objects are on screen from 0.5 s before their events to 0.5 s after.
HAND_MADE = VideoScript(
    duration_s=6,
    fps=10,
    objects=(
        SceneObject(index=0, colour="cyan", shape="circle", cell=0, y_offset=0.0),
        SceneObject(index=1, colour="blue", shape="square", cell=1, y_offset=0.05),
        SceneObject(index=2, colour="red", shape="triangle", cell=2, y_offset=-0.05),
        SceneObject(index=3, colour="green", shape="circle", cell=3, y_offset=0.0),
        SceneObject(index=4, colour="yellow", shape="square", cell=0, y_offset=0.0),
        SceneObject(index=5, colour="purple", shape="triangle", cell=1, y_offset=0.0),
    ),
    events=(
        Event(index=0, obj=1, kind="grow", start_ds=10, end_ds=20),  # blue: on screen [0.5, 2.5) s
        Event(index=1, obj=0, kind="split", start_ds=25, end_ds=35),  # cyan: [2.0, 4.0) s
        Event(index=2, obj=2, kind="pale", start_ds=40, end_ds=50),  # red: [3.5, 5.5) s
    ),
    pad_ds=5,
    cues=(Cue(obj=1, colour="plum", start_ds=5, end_ds=10),),  # behind blue, before its event
)

# frame -> the non-zero columns, worked out by hand: a slot is 15 wide (present 1, shape 3, state 6,
# cue 5), so slot k's present flag is 15 k, its shape 15 k + 1 + SHAPES index (circle, square,
# triangle), its state 15 k + 4 + STATES index (normal, big, small, glowing, pale, split), its cue
# 15 k + 10 + CUE_NAMES index (navy, brown, pine, plum, olive).
GOLDEN = {
    3: set(),  # nobody on screen yet
    7: {30, 32, 34, 43},  # blue (slot 2): present, square, normal, plum backdrop
    10: {30, 32, 35},  # blue grows (start inclusive), the cue has ended (end exclusive)
    22: {30, 32, 34, 75, 76, 79},  # blue normal again; cyan (slot 5) comes on screen: circle, normal
    25: {75, 76, 84},  # blue gone; cyan split
    37: {0, 3, 4, 75, 76, 79},  # red (slot 0) on screen, triangle, normal; cyan normal until 4.0 s
    45: {0, 3, 8},  # red pale
    59: set(),  # the last frame
}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple:
    """Annotations (no videos) of 60 tiny-preset videos; train pairs the cue always, the lead-in never
    more than by chance."""
    out = tmp_path_factory.mktemp("records")
    dataset = build_dataset(SyntheticConfig(preset="tiny", seed=5, rho_visual=1.0, rho_language=0.0), 60)
    write_annotations(dataset, out, 60)
    return dataset, out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_the_feature_layout():
    assert SLOT_WIDTH == 1 + len(SHAPES) + len(STATES) + len(CUE_NAMES) == 15
    assert ORACLE_DIM == 6 * SLOT_WIDTH == 90
    names = feature_names()
    assert len(names) == len(set(names)) == ORACLE_DIM
    assert [group for group, _ in SLOT_GROUPS] == ["present", "shape", "state", "cue"]
    for index, suffix in ((30, ".present.yes"), (32, ".shape.square"), (35, ".state.big"), (43, ".cue.plum")):
        assert names[index].endswith(suffix), (index, names[index])
    assert names[84].endswith(".state.split") and names[8].endswith(".state.pale")


@pytest.mark.parametrize("frame", sorted(GOLDEN))
def test_oracle_features_of_a_hand_made_script(frame: int):
    features = oracle_features(HAND_MADE, np.array([frame]))
    assert features.shape == (1, ORACLE_DIM) and features.dtype == np.float32
    assert set(np.flatnonzero(features[0]).tolist()) == GOLDEN[frame]
    assert set(np.unique(features).tolist()) <= {0.0, 1.0}


def test_oracle_features_keep_the_order_of_the_frames_asked_for():
    frames = np.array(sorted(GOLDEN, reverse=True))
    features = oracle_features(HAND_MADE, frames)
    assert features.shape == (len(frames), ORACLE_DIM)
    for row, frame in zip(features, frames, strict=True):
        assert set(np.flatnonzero(row).tolist()) == GOLDEN[int(frame)]


def decode_slot(row: np.ndarray) -> tuple[bool, str | None, str | None, str | None]:
    """(present, shape, state, cue) of one slot's 15 values, checking each group is one-hot or empty."""
    present, shape, state, cue = np.split(row, np.cumsum([1, len(SHAPES), len(STATES)]))
    assert present.sum() in (0, 1) and cue.sum() in (0, 1)
    assert shape.sum() == state.sum() == present.sum()  # shape and state exactly when on screen

    def value(group: np.ndarray, names: tuple[str, ...]) -> str | None:
        return names[int(np.argmax(group))] if group.sum() else None

    return bool(present.sum()), value(shape, SHAPES), value(state, STATES), value(cue, CUE_NAMES)


def test_oracle_features_agree_with_the_renderer_states():
    """Every frame of 16 generated videos: each colour slot says what `render.scene_states` draws for
    the object of that colour."""
    dataset = build_dataset(SyntheticConfig(preset="tiny", seed=2))
    checked = 0
    for video in dataset.all_videos():
        script = video.script
        frames = np.arange(script.frame_count)
        features = oracle_features(script, frames)  # (T, 90)
        assert features.shape == (script.frame_count, ORACLE_DIM)
        for row, cells in zip(features, scene_states(script, 10 * frames), strict=True):
            slots = row.reshape(6, SLOT_WIDTH)
            for obj, cell in zip(script.objects, cells, strict=True):
                present, shape, state, cue = decode_slot(slots[list(COLOURS).index(obj.colour)])
                assert present == (cell.state != "absent")
                assert (shape, state) == ((obj.shape, cell.state) if present else (None, None))
                assert cue == cell.cue
                checked += 1
    assert checked > 10_000
    # The frames a model reads: T uniformly sampled indices.
    script = dataset.all_videos()[0].script
    indices = uniform_frame_indices(script.frame_count, 16)
    assert np.array_equal(
        oracle_features(script, indices), oracle_features(script, np.arange(script.frame_count))[indices]
    )


def test_records_round_trip_the_scripts_exactly(written: tuple):
    dataset, folder = written
    expected = {video.video_id: video.script for video in dataset.all_videos()}
    assert read_scripts(folder) == expected
    for split in SPLITS:
        for video_id, record in json.loads((folder / f"events_{split}.json").read_text()).items():
            assert script_from_record(record) == expected[video_id]
    # ... so the oracle features of a written benchmark are those of the generator's scripts.
    video = dataset.videos["test_ood"][0]
    frames = np.arange(video.script.frame_count)
    assert np.array_equal(
        oracle_features(read_scripts(folder)[video.video_id], frames), oracle_features(video.script, frames)
    )


def test_question_nuisances_name_the_options_and_the_planted_kinds(written: tuple):
    dataset, folder = written
    for split in SPLITS:
        nuisances = read_question_nuisances(folder, split)
        rows = read_csv(folder / f"{split}.csv")
        confounders = {(r["video_id"], r["qid"]): r for r in read_csv(folder / f"confounders_{split}.csv")}
        assert set(nuisances) == {(r["video_id"], r["qid"]) for r in rows}
        for row in rows:
            n = nuisances[(row["video_id"], row["qid"])]
            assert sorted(n.option_kinds) == sorted(KIND_BY_NAME)
            for i, kind in enumerate(n.option_kinds):  # each option's text names an event of its kind
                text = row[f"a{i}"]
                past = KIND_BY_NAME[kind].past
                assert text == past or (row["type"] == "CW" and text.startswith("because the ") and text.endswith(past))
            planted = confounders[(row["video_id"], row["qid"])]
            assert planted["answer_category"] == n.option_kinds[int(row["answer"])]
            assert paired_cue(n.visual_kind) == planted["visual_nuisance"]
            assert paired_lead_in(n.language_kind) == planted["language_nuisance"]
            assert row["question"].startswith(paired_lead_in(n.language_kind) + " ")
        # rho_visual = 1 in train: the cue's kind is the answer's; test_ood draws it independently.
        of_row = [nuisances[(r["video_id"], r["qid"])] for r in rows]
        visual_agrees = [n.visual_kind == n.option_kinds[int(r["answer"])] for r, n in zip(rows, of_row, strict=True)]
        if split == "train":
            assert all(visual_agrees)
        elif split == "test_ood":
            assert 0 < sum(visual_agrees) < 0.6 * len(rows)
    assert len(nuisances) == 6 * len(dataset.videos["test_ood"])


def test_missing_records_are_a_user_error(tmp_path: Path):
    with pytest.raises(PipelineError, match="re-run `generate`"):
        read_question_nuisances(tmp_path, "train")
    (tmp_path / "events_train.json").write_text("{not json")
    with pytest.raises(PipelineError, match="events_train.json"):
        read_scripts(tmp_path)
