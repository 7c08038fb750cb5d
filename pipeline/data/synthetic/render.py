"""Render a video script to an mp4 file (OpenCV VideoWriter, MPEG-4 part 2 `mp4v`).

Shape notation: H height, W width; a frame is a (H, W, 3) uint8 array, RGB inside this module and
BGR only at the OpenCV boundary.

Frame i shows time t_i = i / fps; an event covers the frames with start <= t_i < end (checked in
integer deciseconds: start_ds * fps <= 10 * i < end_ds * fps). Objects sit in three fixed cells
(left, middle, right) on the background colour and are drawn in their state at t_i: big, small,
white (flash), another colour, or not at all. Between events a frame depends only on the tuple of
object states, so each distinct frame is drawn once and reused (the encoder dominates the time).

The encoder is deterministic: the same script gives byte-identical files (checked in the tests).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.data.synthetic.timeline import Event, SceneObject, VideoScript
from pipeline.data.synthetic.vocabulary import (
    BACKGROUNDS,
    COLOURS,
    FLASH_RGB,
    PALETTE,
    SIZE_BIG,
    SIZE_NORMAL,
    SIZE_SMALL,
)
from pipeline.errors import PipelineError

FOURCC = "mp4v"
NUM_CELLS = 3

# One object's look in a frame: (visible, RGB colour, radius in pixels).
ObjectState = tuple[bool, tuple[int, int, int], int]


def object_state(obj: SceneObject, event: Event | None, cell_size: float) -> ObjectState:
    """How `obj` looks while `event` (one of its own, or None) is under way."""
    colour, size = COLOURS[obj.colour], SIZE_NORMAL
    kind = event.kind if event is not None else None
    if kind is None:
        pass  # the object's own look
    elif kind == "grow":
        size = SIZE_BIG
    elif kind == "shrink":
        size = SIZE_SMALL
    elif kind == "flash":
        colour = FLASH_RGB
    elif kind == "recolour":
        colour = PALETTE[event.colour]
    elif kind == "disappear":
        return (False, colour, 0)
    else:
        raise ValueError(f"unknown event kind {kind!r}")
    return (True, colour, max(2, round(size * cell_size)))


def object_centre(obj: SceneObject, width: int, height: int) -> tuple[int, int]:
    x = round((obj.cell + 0.5) * width / NUM_CELLS)
    y = round(height * (0.5 + obj.y_offset))
    return x, y


def draw_frame(
    objects: tuple[SceneObject, ...], states: tuple[ObjectState, ...], background: str, width: int, height: int
) -> np.ndarray:
    """One RGB frame, (H, W, 3) uint8."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = BACKGROUNDS[background]
    for obj, (visible, colour, radius) in zip(objects, states, strict=True):
        if not visible:
            continue
        x, y = object_centre(obj, width, height)
        colour = tuple(int(c) for c in colour)
        if obj.shape == "circle":
            cv2.circle(frame, (x, y), radius, colour, thickness=-1, lineType=cv2.LINE_AA)
        elif obj.shape == "square":
            half = round(radius * 0.9)  # a square of the circle's area would be 0.89 r
            cv2.rectangle(frame, (x - half, y - half), (x + half, y + half), colour, thickness=-1)
        elif obj.shape == "triangle":
            # Equilateral, pointing up, centred on the circumcircle of `radius` (x 1.15: similar area).
            r = radius * 1.15
            points = np.array(
                [[x, y - r], [x - 0.866 * r, y + 0.5 * r], [x + 0.866 * r, y + 0.5 * r]], dtype=np.float64
            )
            cv2.fillPoly(frame, [np.round(points).astype(np.int32)], colour, lineType=cv2.LINE_AA)
        else:
            raise ValueError(f"unknown shape {obj.shape!r}")
    return frame


def frame_states(script: VideoScript, width: int, height: int) -> list[tuple[ObjectState, ...]]:
    """The objects' states in every frame, frame_count entries."""
    cell_size = min(width / NUM_CELLS, height)
    events_by_object = {o.index: script.events_of(o.index) for o in script.objects}
    states = []
    for i in range(script.frame_count):
        tick = 10 * i  # t_i in deciseconds, times fps
        frame = []
        for obj in script.objects:
            current = next(
                (e for e in events_by_object[obj.index] if e.start_ds * script.fps <= tick < e.end_ds * script.fps),
                None,
            )
            frame.append(object_state(obj, current, cell_size))
        states.append(tuple(frame))
    return states


def render_video(script: VideoScript, background: str, path: Path, width: int, height: int) -> None:
    """Write the script as an mp4 of frame_count frames at script.fps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), float(script.fps), (width, height))
    if not writer.isOpened():
        raise PipelineError(
            f"generate: OpenCV cannot open an `{FOURCC}` video writer for {path}; "
            "check that opencv-python-headless is installed with its bundled FFmpeg"
        )
    cache: dict[tuple[ObjectState, ...], np.ndarray] = {}
    try:
        for states in frame_states(script, width, height):
            if states not in cache:
                rgb = draw_frame(script.objects, states, background, width, height)
                cache[states] = np.ascontiguousarray(rgb[:, :, ::-1])  # OpenCV wants BGR
            writer.write(cache[states])
    finally:
        writer.release()
