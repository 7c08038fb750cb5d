"""A video's script: its objects and their timeline of events, with planted cause -> effect links.

Time is kept in integer deciseconds (ds) everywhere inside the generator, so comparisons are exact
and the files get clean one-decimal seconds; `Event.start_s` / `end_s` convert.

The timeline, per video of D seconds:
- 3 objects, each with its own colour (its name), a shape, and a fixed cell (left, middle, right).
- Every object performs each of the 5 event kinds once, in random order, plus (with probability
  `EXTRA_EVENT_PROB`) one more event of a random kind: so a question's subject always has an
  event of every other kind to serve as a wrong option, and event-kind frequencies in a video say
  nothing about which kind the questions ask about. An object's events never overlap and are at
  least `MIN_GAP_DS` apart; different objects act in parallel.
- Event lengths are ~D/10 (0.8-1.3x), never under 2 sample spacings of a 32-frame uniform
  sampling (2 * D / 32) plus 0.1 s, so each event is seen in >= 2 sampled frames.
- The causal rule: an event of object X is *caused* by an event of another object Y when Y's event
  ends at most `CAUSE_MAX_LAG_DS` before X's starts and no other object's event ends in the
  `cause_window_ds(D)` before X's start (so the trigger is unambiguous). The generator tries to
  plant 5-7 such links per video by sliding an event of X to start right after an event of Y
  (within X's free time); `causal_links` then re-derives every link from the rule, planted or
  accidental (about 4 per video survive the uniqueness condition).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from pipeline.data.synthetic.vocabulary import COLOURS, KIND_NAMES, RECOLOURS, SHAPES, event_text

NUM_OBJECTS = 3
EXTRA_EVENT_PROB = 0.5
MIN_GAP_DS = 3
LENGTH_RANGE = (0.8, 1.3)  # event length as a multiple of D/10
CAUSE_MAX_LAG_DS = 2
PLANTED_LINKS = (5, 7)  # inclusive range of links the generator tries to plant
MAX_PLANT_SHIFT_UNITS = 2.0  # an effect moves by at most this many D/10 units


def cause_window_ds(duration_ds: int) -> int:
    """No other object's event may end this close before an effect (1 s, or D/20 when longer)."""
    return max(10, duration_ds // 20)


def min_event_ds(duration_ds: int) -> int:
    """Shortest event: two sample spacings of a 32-frame uniform sampling, plus 0.1 s."""
    return math.ceil(2 * duration_ds / 32) + 1


@dataclass(frozen=True)
class SceneObject:
    index: int
    colour: str  # its name colour; `recolour` events change its look only for their duration
    shape: str
    cell: int  # 0 left, 1 middle, 2 right
    y_offset: float  # vertical offset of its centre, as a fraction of the frame height

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Event:
    index: int  # position in the script's event list (sorted by start, then object)
    obj: int  # SceneObject.index
    kind: str  # one of vocabulary.KIND_NAMES
    start_ds: int
    end_ds: int  # exclusive: frames at t < end show the event
    colour: str | None = None  # the colour a `recolour` event turns the object into

    @property
    def start_s(self) -> float:
        return self.start_ds / 10

    @property
    def end_s(self) -> float:
        return self.end_ds / 10

    @property
    def length_ds(self) -> int:
        return self.end_ds - self.start_ds

    def text(self, form: str = "past") -> str:
        return event_text(self.kind, form, self.colour)

    def overlap_ds(self, other: Event) -> int:
        return max(0, min(self.end_ds, other.end_ds) - max(self.start_ds, other.start_ds))


@dataclass(frozen=True)
class VideoScript:
    duration_s: int
    fps: int
    objects: tuple[SceneObject, ...]
    events: tuple[Event, ...]
    causal_links: tuple[tuple[int, int], ...]  # (cause event index, effect event index)

    @property
    def duration_ds(self) -> int:
        return self.duration_s * 10

    @property
    def frame_count(self) -> int:
        return self.duration_s * self.fps

    def events_of(self, obj: int) -> list[Event]:
        return [e for e in self.events if e.obj == obj]


def sample_objects(rng: np.random.Generator) -> tuple[SceneObject, ...]:
    colours = list(COLOURS)
    chosen = rng.choice(len(colours), size=NUM_OBJECTS, replace=False)
    cells = rng.permutation(NUM_OBJECTS)
    return tuple(
        SceneObject(
            index=i,
            colour=colours[int(chosen[i])],
            shape=SHAPES[int(rng.integers(len(SHAPES)))],
            cell=int(cells[i]),
            y_offset=round(float(rng.uniform(-0.12, 0.12)), 3),
        )
        for i in range(NUM_OBJECTS)
    )


def _sample_object_events(rng: np.random.Generator, obj: int, duration_ds: int, free_colours: list[str]) -> list[Event]:
    kinds = list(KIND_NAMES)
    if rng.random() < EXTRA_EVENT_PROB:
        kinds.append(KIND_NAMES[int(rng.integers(len(KIND_NAMES)))])
    order = [kinds[int(i)] for i in rng.permutation(len(kinds))]
    unit = duration_ds / 10
    shortest = min_event_ds(duration_ds)
    lengths = [max(shortest, round(unit * rng.uniform(*LENGTH_RANGE))) for _ in order]
    free = duration_ds - sum(lengths) - MIN_GAP_DS * (len(order) - 1)
    if free < 0:
        raise AssertionError(f"{len(order)} events of {lengths} ds do not fit in {duration_ds} ds")
    # Spread the free time over the len+1 gaps (before, between, after) uniformly at random.
    shares = rng.dirichlet(np.ones(len(order) + 1))
    gaps = [int(math.floor(free * s)) for s in shares]
    events = []
    t = gaps[0]
    for i, (kind, length) in enumerate(zip(order, lengths, strict=True)):
        colour = free_colours[int(rng.integers(len(free_colours)))] if kind == "recolour" else None
        events.append(Event(index=-1, obj=obj, kind=kind, start_ds=t, end_ds=t + length, colour=colour))
        t += length + MIN_GAP_DS + gaps[i + 1]
    return events


def _fits(moved: Event, others: list[Event], duration_ds: int) -> bool:
    """`moved` stays inside the video and MIN_GAP_DS away from its object's `others` events."""
    if moved.start_ds < 0 or moved.end_ds > duration_ds:
        return False
    return all(
        moved.start_ds >= other.end_ds + MIN_GAP_DS or other.start_ds >= moved.end_ds + MIN_GAP_DS for other in others
    )


def _plant_links(rng: np.random.Generator, events: list[Event], duration_ds: int) -> list[Event]:
    """Slide effects to start right after a cause of another object (see module docstring)."""
    max_shift = MAX_PLANT_SHIFT_UNITS * duration_ds / 10
    wanted = int(rng.integers(PLANTED_LINKS[0], PLANTED_LINKS[1] + 1))
    used: set[int] = set()  # positions in `events` already part of a planted link
    for _ in range(wanted):
        lag = int(rng.integers(0, CAUSE_MAX_LAG_DS + 1))
        feasible = []
        for ci, cause in enumerate(events):
            if ci in used:
                continue
            for ei, effect in enumerate(events):
                if ei in used or effect.obj == cause.obj:
                    continue
                start = cause.end_ds + lag
                if abs(start - effect.start_ds) > max_shift:
                    continue
                moved = replace(effect, start_ds=start, end_ds=start + effect.length_ds)
                own = [e for j, e in enumerate(events) if e.obj == effect.obj and j != ei]
                if _fits(moved, own, duration_ds):
                    feasible.append((ci, ei, moved))
        if not feasible:
            break
        ci, ei, moved = feasible[int(rng.integers(len(feasible)))]
        events[ei] = moved
        used.update((ci, ei))
    return events


def derive_causal_links(events: tuple[Event, ...], duration_ds: int) -> tuple[tuple[int, int], ...]:
    """Every (cause, effect) pair the causal rule admits, in effect order."""
    window = cause_window_ds(duration_ds)
    links = []
    for effect in events:
        recent = [e for e in events if e.obj != effect.obj and effect.start_ds - window <= e.end_ds <= effect.start_ds]
        if len(recent) == 1 and effect.start_ds - recent[0].end_ds <= CAUSE_MAX_LAG_DS:
            links.append((recent[0].index, effect.index))
    return tuple(links)


def sample_script(rng: np.random.Generator, duration_s: int, fps: int) -> VideoScript:
    """Objects, their events and the causal links of one video."""
    objects = sample_objects(rng)
    free_colours = list(RECOLOURS)  # never an object's own colour: see vocabulary.RECOLOURS
    duration_ds = duration_s * 10
    events: list[Event] = []
    for obj in objects:
        events.extend(_sample_object_events(rng, obj.index, duration_ds, free_colours))
    events = _plant_links(rng, events, duration_ds)
    ordered = sorted(events, key=lambda e: (e.start_ds, e.obj))
    indexed = tuple(replace(e, index=i) for i, e in enumerate(ordered))
    return VideoScript(
        duration_s=duration_s,
        fps=fps,
        objects=objects,
        events=indexed,
        causal_links=derive_causal_links(indexed, duration_ds),
    )
