"""A video's script: its objects, their events one after another, and the backdrop cues.

Time is kept in integer deciseconds (ds) everywhere inside the generator, so comparisons are exact
and the files get clean one-decimal seconds; `start_s` / `end_s` convert.

The script of a video of D seconds (generator 2.x):
- 6 objects, each with its own colour (all 6 object colours are used) and a random shape; an
  object is named "the <colour> <shape>". Objects are on screen only part of the time (below), so
  they share the 4 cells of a 2 x 2 grid: each object keeps one cell, and objects on screen at the
  same time never share one (a greedy colouring of the on-screen intervals; big cells keep the
  objects large in the frame, which random-init encoders need).
- Most objects act exactly once ("single actors"); `repeat_actors` of them act twice, with two
  different event kinds. Events never overlap: one thing happens at a time, in a random order in
  which a repeat actor's two events are never adjacent (another object acts in between, so
  "after / before" questions about it are well posed).
- Every one of the 5 event kinds occurs at least once, so whatever a question's answer, the other
  four kinds happened in the same video at another time (the wrong options' source).
- Event lengths are ~D / (events + 1.5) (0.9-1.1x) and never shorter than `min_event_ds`
  (1.6 sample spacings of the T-frame uniform sampling the preset is made for), so every event
  is seen by at least one sampled frame, usually two; the rest of the video is gaps.
- An object is on screen only around its events, as actors in real videos come and go: from
  `pad_ds` before each of its events to `pad_ds` after (clipped to the video), in its normal look
  outside the event. So where an object is tells when it acts, roughly: finding the subject is
  easy, finding *its event* inside its time on screen is the grounding.
- Cues (the visual nuisance) are added by the dataset (dataset.py), once the questions are chosen:
  a coloured backdrop behind the question's subject during one of the subject's pads next to the
  evidence: on screen with the subject, but outside the evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from pipeline.data.synthetic.vocabulary import COLOURS, KIND_NAMES, SHAPES, event_text

NUM_OBJECTS = 6
GRID_COLUMNS = 2
GRID_ROWS = 2
NUM_CELLS = GRID_COLUMNS * GRID_ROWS
MIN_GAP_DS = 2  # between consecutive events
LENGTH_JITTER = (0.9, 1.1)
FREE_UNITS = 1.5  # gap time, in event lengths
PAD_UNITS = 0.7  # an object comes on screen this many event lengths before its event, leaves as long after
MIN_PAD_SAMPLES = 1.2  # and at least this many sample spacings
MIN_EVENT_SAMPLES = 1.6  # shortest event, in sample spacings of the preset's frame count
MAX_ORDER_ATTEMPTS = 1000


def min_event_ds(duration_ds: int, num_frames: int) -> int:
    """Shortest event: `MIN_EVENT_SAMPLES` spacings of a `num_frames` uniform sampling."""
    return math.ceil(MIN_EVENT_SAMPLES * duration_ds / num_frames)


@dataclass(frozen=True)
class SceneObject:
    index: int
    colour: str  # its own colour (every event keeps it in view)
    shape: str
    cell: int  # 0..3: row-major in the 2 x 2 grid (0 top left, 3 bottom right)
    y_offset: float  # vertical offset of its centre, as a fraction of the cell height

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Event:
    index: int  # position in time order
    obj: int  # SceneObject.index
    kind: str  # one of vocabulary.KIND_NAMES
    start_ds: int
    end_ds: int  # exclusive: frames at t < end show the event

    @property
    def start_s(self) -> float:
        return self.start_ds / 10

    @property
    def end_s(self) -> float:
        return self.end_ds / 10

    def text(self, form: str = "past") -> str:
        return event_text(self.kind, form)

    def overlaps(self, start_ds: int, end_ds: int) -> bool:
        return self.start_ds < end_ds and start_ds < self.end_ds


@dataclass(frozen=True)
class Cue:
    """The visual nuisance: a backdrop of colour `colour` behind object `obj` in [start, end)."""

    obj: int
    colour: str  # one of vocabulary.CUE_NAMES
    start_ds: int
    end_ds: int

    @property
    def start_s(self) -> float:
        return self.start_ds / 10

    @property
    def end_s(self) -> float:
        return self.end_ds / 10


@dataclass(frozen=True)
class VideoScript:
    duration_s: int
    fps: int
    objects: tuple[SceneObject, ...]
    events: tuple[Event, ...]  # in time order, never overlapping
    pad_ds: int  # an object is on screen from pad_ds before each of its events to pad_ds after
    cues: tuple[Cue, ...] = ()

    def window(self, event: Event) -> tuple[int, int]:
        """[start, end) in ds during which `event`'s object is on screen around it."""
        return max(0, event.start_ds - self.pad_ds), min(self.duration_ds, event.end_ds + self.pad_ds)

    def on_screen(self, obj: int, tick: int) -> bool:
        """Whether object `obj` is on screen at `tick` (deciseconds x fps: frame i is tick 10 i)."""
        return any(
            start * self.fps <= tick < end * self.fps for start, end in (self.window(e) for e in self.events_of(obj))
        )

    @property
    def duration_ds(self) -> int:
        return self.duration_s * 10

    @property
    def frame_count(self) -> int:
        return self.duration_s * self.fps

    def events_of(self, obj: int) -> list[Event]:
        return [e for e in self.events if e.obj == obj]

    @property
    def repeat_actors(self) -> tuple[int, ...]:
        return tuple(o.index for o in self.objects if len(self.events_of(o.index)) > 1)


def sample_objects(rng: np.random.Generator) -> tuple[SceneObject, ...]:
    colours = [list(COLOURS)[int(i)] for i in rng.permutation(len(COLOURS))][:NUM_OBJECTS]
    return tuple(
        SceneObject(
            index=i,
            colour=colours[i],
            shape=SHAPES[int(rng.integers(len(SHAPES)))],
            cell=-1,  # assigned by `assign_cells` once the timeline is known
            y_offset=round(float(rng.uniform(-0.1, 0.1)), 3),
        )
        for i in range(NUM_OBJECTS)
    )


def _actor_order(rng: np.random.Generator, repeat_actors: list[int]) -> list[int]:
    """Objects in acting order: each once, repeat actors twice and never twice in a row."""
    slots = list(range(NUM_OBJECTS)) + repeat_actors
    for _ in range(MAX_ORDER_ATTEMPTS):
        order = [slots[int(i)] for i in rng.permutation(len(slots))]
        if all(a != b for a, b in pairwise(order)):
            return order
    raise AssertionError(f"no acting order without adjacent repeats for {repeat_actors}")


def _event_kinds(rng: np.random.Generator, order: list[int]) -> list[str]:
    """A kind per acting slot: all 5 kinds at least once; a repeat actor's two kinds differ."""
    for _ in range(MAX_ORDER_ATTEMPTS):
        extra = [KIND_NAMES[int(rng.integers(len(KIND_NAMES)))] for _ in range(len(order) - len(KIND_NAMES))]
        pool = list(KIND_NAMES) + extra
        kinds = [pool[int(i)] for i in rng.permutation(len(pool))]
        by_actor: dict[int, list[str]] = {}
        for actor, kind in zip(order, kinds, strict=True):
            by_actor.setdefault(actor, []).append(kind)
        if all(len(set(k)) == len(k) for k in by_actor.values()):
            return kinds
    raise AssertionError("no kind assignment with distinct kinds per repeat actor")


def pad_ds(duration_ds: int, num_events: int, num_frames: int) -> int:
    """How long before and after its events an object is on screen."""
    unit = duration_ds / (num_events + FREE_UNITS)
    return max(math.ceil(MIN_PAD_SAMPLES * duration_ds / num_frames), round(PAD_UNITS * unit))


def sample_script(
    rng: np.random.Generator, duration_s: int, fps: int, repeat_actors: int, num_frames: int
) -> VideoScript:
    """Objects and their events, one after another (see the module docstring)."""
    objects = sample_objects(rng)
    duration_ds = duration_s * 10
    repeaters = sorted(int(i) for i in rng.choice(NUM_OBJECTS, size=repeat_actors, replace=False))
    order = _actor_order(rng, repeaters)
    kinds = _event_kinds(rng, order)
    unit = duration_ds / (len(order) + FREE_UNITS)
    shortest = min_event_ds(duration_ds, num_frames)
    lengths = [max(shortest, round(unit * rng.uniform(*LENGTH_JITTER))) for _ in order]
    # Short videos: trim the longest events (never below `shortest`) until everything fits.
    while sum(lengths) + MIN_GAP_DS * (len(order) - 1) > duration_ds:
        longest = int(np.argmax(lengths))
        if lengths[longest] <= shortest:
            raise AssertionError(f"{len(order)} events of >= {shortest} ds do not fit in {duration_ds} ds")
        lengths[longest] -= 1
    free = duration_ds - sum(lengths) - MIN_GAP_DS * (len(order) - 1)
    shares = rng.dirichlet(np.ones(len(order) + 1))
    gaps = [int(math.floor(free * s)) for s in shares]
    events = []
    t = gaps[0]
    for i, (actor, kind, length) in enumerate(zip(order, kinds, lengths, strict=True)):
        events.append(Event(index=i, obj=actor, kind=kind, start_ds=t, end_ds=t + length))
        t += length + MIN_GAP_DS + gaps[i + 1]
    script = VideoScript(
        duration_s=duration_s,
        fps=fps,
        objects=objects,
        events=tuple(events),
        pad_ds=pad_ds(duration_ds, len(order), num_frames),
    )
    return replace(script, objects=assign_cells(rng, script))


def assign_cells(rng: np.random.Generator, script: VideoScript) -> tuple[SceneObject, ...]:
    """One cell per object, never shared by two objects on screen at the same time.

    Objects are coloured in order of first appearance, each taking a random cell among those free of
    every object already placed whose on-screen time overlaps its own.
    """
    spans = {o.index: [script.window(e) for e in script.events_of(o.index)] for o in script.objects}

    def overlap(a: int, b: int) -> bool:
        return any(s1 < e2 and s2 < e1 for s1, e1 in spans[a] for s2, e2 in spans[b])

    first_seen = sorted(script.objects, key=lambda o: min(s for s, _ in spans[o.index]))
    cells: dict[int, int] = {}
    for obj in first_seen:
        taken = {cells[other] for other in cells if overlap(obj.index, other)}
        free = [c for c in range(NUM_CELLS) if c not in taken]
        if not free:
            raise NoCellError(f"object {obj.index} overlaps objects in all {NUM_CELLS} cells")
        cells[obj.index] = free[int(rng.integers(len(free)))]
    return tuple(replace(o, cell=cells[o.index]) for o in script.objects)


class NoCellError(ValueError):
    """More objects on screen at once than there are cells (the caller draws another timeline)."""


def cue_windows(
    script: VideoScript, subject: int, evidence: tuple[tuple[int, int], ...], min_length_ds: int = 1
) -> list[tuple[int, int]]:
    """Where the subject's cue may go: its pads (on screen, normal look) that do not touch the evidence and
    last at least `min_length_ds`, those of the subject's events next to the evidence first.

    A pad cut short by the start or end of the video can be shorter than a sample spacing (or hold no
    frame at all); `min_length_ds` = one spacing of the preset's T-frame sampling keeps every cue seen.
    """
    pads: list[tuple[int, tuple[int, int]]] = []
    for event in script.events_of(subject):
        start, end = script.window(event)
        for pad in ((start, event.start_ds), (event.end_ds, end)):
            if pad[1] - pad[0] >= min_length_ds and all(pad[1] <= s or pad[0] >= e for s, e in evidence):
                near = any(min(abs(pad[0] - e), abs(pad[1] - s)) == 0 for s, e in evidence)
                pads.append((0 if near else 1, pad))
    best = min((near for near, _ in pads), default=None)
    return [pad for near, pad in pads if near == best]
