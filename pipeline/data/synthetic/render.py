"""Render a video script to an mp4 file (OpenCV VideoWriter, MPEG-4 part 2 `mp4v`).

Shape notation: H height, W width; a frame is a (H, W, 3) uint8 array, RGB inside this module and
BGR only at the OpenCV boundary.

Frame i shows time t_i = i / fps; an event or a cue covers the frames with start <= t_i < end
(checked in integer deciseconds: start_ds * fps <= 10 * i < end_ds * fps). The 6 objects sit in the
cells of a 2 x 2 grid on the background colour; an object on screen at t_i (timeline.py) is drawn in
its state (normal, big, small, glowing, pale, split in two), over its cell's backdrop while a cue
is shown. A frame depends only
on the tuple of cell states, so each distinct frame is drawn once and reused.

`scene_states` is also what the oracle visual features are made of (`pipeline/data/synthetic/oracle.py`).
The encoder is deterministic: the same script gives byte-identical files (checked in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.synthetic.timeline import GRID_COLUMNS, GRID_ROWS, SceneObject, VideoScript
from pipeline.data.synthetic.vocabulary import (
    BACKGROUND_RGB,
    COLOURS,
    CUE_COLOURS,
    CUE_MARGIN,
    GLOW_RGB,
    GLOW_SIZE,
    KIND_BY_NAME,
    PALE_MIX,
    SIZE_BIG,
    SIZE_NORMAL,
    SIZE_SMALL,
    SPLIT_SIZE,
)
from pipeline.errors import PipelineError

FOURCC = "mp4v"


@dataclass(frozen=True)
class CellState:
    """What one object's cell shows at one moment."""

    state: str  # vocabulary.STATES: "normal" or the state of the event under way; "absent" off screen
    cue: str | None  # the backdrop colour shown behind the object, if any


def scene_states(script: VideoScript, times_ds10: np.ndarray) -> list[tuple[CellState, ...]]:
    """Each object's CellState at each time; times are in deciseconds x fps (10 * frame index).

    A frame index i is time tick 10 * i against bounds start_ds * fps (exact integer comparison).
    """
    fps = script.fps
    states = []
    for tick in np.asarray(times_ds10, dtype=np.int64):
        frame = []
        for obj in script.objects:
            event = next(
                (e for e in script.events if e.obj == obj.index and e.start_ds * fps <= tick < e.end_ds * fps), None
            )
            cue = next(
                (c.colour for c in script.cues if c.obj == obj.index and c.start_ds * fps <= tick < c.end_ds * fps),
                None,
            )
            if event is None:
                on_screen = script.on_screen(obj.index, int(tick))
                frame.append(CellState("normal" if on_screen else "absent", cue))
            else:
                frame.append(CellState(KIND_BY_NAME[event.kind].state, cue))
        states.append(tuple(frame))
    return states


def cell_box(cell: int, width: int, height: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a grid cell in pixels."""
    col, row = cell % GRID_COLUMNS, cell // GRID_COLUMNS
    cw, ch = width / GRID_COLUMNS, height / GRID_ROWS
    return col * cw, row * ch, (col + 1) * cw, (row + 1) * ch


def _draw_object(frame: np.ndarray, obj: SceneObject, cell: CellState, width: int, height: int) -> None:
    x0, y0, x1, y1 = cell_box(obj.cell, width, height)
    side = min(x1 - x0, y1 - y0)
    if cell.cue is not None:
        m = CUE_MARGIN * side
        cv2.rectangle(
            frame, (round(x0 + m), round(y0 + m)), (round(x1 - m) - 1, round(y1 - m) - 1), CUE_COLOURS[cell.cue], -1
        )
    if cell.state == "absent":
        return
    colour = tuple(int(c) for c in COLOURS[obj.colour])
    radius = SIZE_NORMAL * side
    x = (x0 + x1) / 2
    y = (y0 + y1) / 2 + obj.y_offset * (y1 - y0)
    if cell.state == "big":
        radius = SIZE_BIG * side
    elif cell.state == "small":
        radius = SIZE_SMALL * side
    elif cell.state == "glowing":
        _draw_shape(frame, obj.shape, x, y, GLOW_SIZE * radius, GLOW_RGB, thickness=-1)
    elif cell.state == "split":
        copy = SPLIT_SIZE * radius
        for dx in (-1.1 * copy, 1.1 * copy):
            _draw_shape(frame, obj.shape, x + dx, y, copy, colour, thickness=-1)
        return
    elif cell.state == "pale":
        colour = tuple(round((1 - PALE_MIX) * c + PALE_MIX * 255) for c in colour)
    _draw_shape(frame, obj.shape, x, y, radius, colour, thickness=-1)


def _draw_shape(
    frame: np.ndarray, shape: str, x: float, y: float, radius: float, colour: tuple, thickness: int
) -> None:
    """A circle, square or triangle of `radius` centred at (x, y); thickness -1 fills it."""
    radius = max(2, round(radius))
    x, y = round(x), round(y)
    if shape == "circle":
        cv2.circle(frame, (x, y), radius, colour, thickness=thickness, lineType=cv2.LINE_AA)
    elif shape == "square":
        half = round(radius * 0.9)  # a square of the circle's area would be 0.89 r
        cv2.rectangle(frame, (x - half, y - half), (x + half, y + half), colour, thickness=thickness)
    elif shape == "triangle":
        # Equilateral, pointing up, centred on the circumcircle of `radius` (x 1.15: similar area).
        r = radius * 1.15
        points = np.round(np.array([[x, y - r], [x - 0.866 * r, y + 0.5 * r], [x + 0.866 * r, y + 0.5 * r]])).astype(
            np.int32
        )
        if thickness < 0:
            cv2.fillPoly(frame, [points], colour, lineType=cv2.LINE_AA)
        else:
            cv2.polylines(frame, [points], isClosed=True, color=colour, thickness=thickness, lineType=cv2.LINE_AA)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def draw_frame(objects: tuple[SceneObject, ...], cells: tuple[CellState, ...], width: int, height: int) -> np.ndarray:
    """One RGB frame, (H, W, 3) uint8."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = BACKGROUND_RGB
    for obj, cell in zip(objects, cells, strict=True):
        _draw_object(frame, obj, cell, width, height)
    return frame


def render_video(script: VideoScript, path: Path, width: int, height: int) -> None:
    """Write the script as an mp4 of frame_count frames at script.fps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), float(script.fps), (width, height))
    if not writer.isOpened():
        raise PipelineError(
            f"generate: OpenCV cannot open an `{FOURCC}` video writer for {path}; "
            "check that opencv-python-headless is installed with its bundled FFmpeg"
        )
    cache: dict[tuple[CellState, ...], np.ndarray] = {}
    try:
        for cells in scene_states(script, 10 * np.arange(script.frame_count)):
            if cells not in cache:
                rgb = draw_frame(script.objects, cells, width, height)
                cache[cells] = np.ascontiguousarray(rgb[:, :, ::-1])  # OpenCV wants BGR
            writer.write(cache[cells])
    finally:
        writer.release()
