"""Oracle frame features for the synthetic benchmark: the scene state the generator drew, as numbers.

`features.visual.model: oracle` writes these instead of CLIP features, in the same `visual.parquet`
schema (metadata `model: oracle`). They are the upper bound of what any visual encoder could give:
if a model cannot learn the task from them, the model (not the features) is the problem.

One frame's vector is the concatenation, over the 6 object colours in a fixed order (an object is
named by its colour, so slot k is "the <colour k> object"), of one-hot groups (`SLOT_GROUPS`): whether
it is on screen, its shape, its state (normal or the state of its event under way) and the colour of
the backdrop cue behind it (all zeros when none). Width = 6 x 15 = 90. Object-centric on purpose: the
scene as a perfect object detector would report it.

The frame at index i of a video shows time tick 10 i (deciseconds x fps), exactly as rendered.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.synthetic.render import scene_states
from pipeline.data.synthetic.timeline import NUM_OBJECTS, VideoScript
from pipeline.data.synthetic.vocabulary import COLOURS, CUE_NAMES, SHAPES, STATES

SLOT_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("present", ("yes",)),
    ("shape", SHAPES),
    ("state", STATES),
    ("cue", CUE_NAMES),
)
SLOT_WIDTH = sum(len(values) for _, values in SLOT_GROUPS)
ORACLE_DIM = NUM_OBJECTS * SLOT_WIDTH


def feature_names() -> list[str]:
    """Name of each of the ORACLE_DIM columns, e.g. `cell2.state.big`."""
    return [
        f"cell{cell}.{group}.{value}"
        for cell in range(NUM_OBJECTS)
        for group, values in SLOT_GROUPS
        for value in values
    ]


def oracle_features(script: VideoScript, frame_indices: np.ndarray) -> np.ndarray:
    """(T, ORACLE_DIM) float32 one-hot scene states of the frames `frame_indices` (T,)."""
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    features = np.zeros((len(frame_indices), NUM_OBJECTS, SLOT_WIDTH), dtype=np.float32)
    by_slot = {list(COLOURS).index(obj.colour): obj for obj in script.objects}  # slot = the object's own colour
    for t, cells in enumerate(scene_states(script, 10 * frame_indices)):
        state_of = {obj.index: state for obj, state in zip(script.objects, cells, strict=True)}
        for slot in range(NUM_OBJECTS):
            obj = by_slot[slot]
            state = state_of[obj.index]
            if state.state == "absent":
                values = {"present": None, "shape": None, "state": None, "cue": state.cue}
            else:
                values = {"present": "yes", "shape": obj.shape, "state": state.state, "cue": state.cue}
            offset = 0
            for group, names in SLOT_GROUPS:
                value = values[group]
                if value is not None:
                    features[t, slot, offset + names.index(value)] = 1.0
                offset += len(names)
    return features.reshape(len(frame_indices), ORACLE_DIM)
