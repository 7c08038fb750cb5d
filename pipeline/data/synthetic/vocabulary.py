"""The benchmark's closed vocabulary: object colours and shapes, event kinds, the planted nuisances.

Everything a question, an option or a frame can show is listed here, once, so the generator,
the renderer, the oracle features and the dataset card agree. The vocabulary is small and regular
(6 object colours, 3 shapes, 5 event kinds, a handful of question templates) so that a small model
on frozen frame features can learn it on a CPU.

Event kinds: every kind is a *temporary state* of one object that is visible in any single frame
inside the event and reverts at the event's end. Every state keeps the object's own colour and
shape in view (bigger, smaller, with a white glow, paler, or as two copies): a
frame of the event shows *which* object acts and *how*, locally in its cell. (Generator 1.x also had
"flashed white", "turned <colour>" and "disappeared": those hide the object's identity during the
event, so telling who acted needs the frames around it, which a small model on random-init frame
features could not learn: 12-33 % per-kind accuracy against 80 % for "grew bigger".)

Naming: an object is named by its colour and shape ("the red circle"); the 6 colours are distinct
within a video.

The planted nuisances (confounders), paired with the answer's event kind (index k <-> k):
- visual: a coloured backdrop (CUE_COLOURS) drawn behind the question's subject, in its cell, for a
  while *outside* the question's evidence. A model that pools the subject's frames over the whole
  video sees it; one that grounds the evidence does not.
- linguistic: the words a question opens with (LEAD_INS).
"""

from __future__ import annotations

from dataclasses import dataclass

# Object colours (RGB), bright and far apart in hue; the glow is white, so white is not among them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 80, 255),
    "yellow": (245, 225, 30),
    "purple": (160, 50, 230),
    "cyan": (30, 210, 220),
}
GLOW_RGB = (255, 255, 255)
# The scene's background: one dark neutral colour for every video (it is not a nuisance any more).
BACKGROUND_RGB = (36, 36, 36)

SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class EventKind:
    """One kind of event and its surface forms."""

    name: str
    past: str  # options, and "after/before Y <past>" references
    base: str  # "why did X <base>"
    state: str  # the object's look while the event lasts (dataset card, oracle feature names)


# The answer categories, in pairing order (index k <-> CUE_COLOURS[k] <-> LEAD_INS[k]).
EVENT_KINDS: tuple[EventKind, ...] = (
    EventKind("grow", past="grew bigger", base="grow bigger", state="big"),
    EventKind("shrink", past="shrank", base="shrink", state="small"),
    EventKind("glow", past="glowed", base="glow", state="glowing"),
    EventKind("pale", past="turned pale", base="turn pale", state="pale"),
    EventKind("split", past="split in two", base="split in two", state="split"),
)
KIND_NAMES: tuple[str, ...] = tuple(kind.name for kind in EVENT_KINDS)
KIND_BY_NAME: dict[str, EventKind] = {kind.name: kind for kind in EVENT_KINDS}
# An object's look in a frame: normal, or the state of the kind of event under way.
STATES: tuple[str, ...] = ("normal", *(kind.state for kind in EVENT_KINDS))
# ...and "absent" while it is off screen (not one of STATES: the oracle's `present` flag says it).

# Visual nuisance: backdrop colours (RGB), mid-dark and unlike every object colour and white.
CUE_COLOURS: dict[str, tuple[int, int, int]] = {
    "navy": (30, 40, 130),
    "brown": (120, 66, 24),
    "pine": (24, 100, 58),
    "plum": (110, 36, 100),
    "olive": (104, 104, 22),
}
CUE_NAMES: tuple[str, ...] = tuple(CUE_COLOURS)

# Linguistic nuisance: the words a question opens with. No commas: the CSV is written unquoted.
LEAD_INS: tuple[str, ...] = (
    "in the video",
    "in this clip",
    "on the screen",
    "in the scene",
    "in the animation",
)

assert len(EVENT_KINDS) == len(CUE_COLOURS) == len(LEAD_INS), "one nuisance value per answer category"

# Relative object sizes: radius as a fraction of the object's cell side (the smaller of its width, height).
SIZE_NORMAL = 0.24
SIZE_BIG = 0.42
SIZE_SMALL = 0.09
GLOW_SIZE = 1.5  # the white disc behind a glowing object, as a multiple of its radius
PALE_MIX = 0.55  # a pale object's colour: this share of white mixed into its own
SPLIT_SIZE = 0.9  # each of the two copies, as a fraction of the normal radius
# The backdrop (visual nuisance) covers the cell but this margin, as a fraction of the cell side.
CUE_MARGIN = 0.06


def paired_cue(kind: str) -> str:
    """The backdrop colour planted with answer category `kind`."""
    return CUE_NAMES[KIND_NAMES.index(kind)]


def paired_lead_in(kind: str) -> str:
    """The question lead-in planted with answer category `kind`."""
    return LEAD_INS[KIND_NAMES.index(kind)]


def kind_of_cue(cue: str) -> str:
    return KIND_NAMES[CUE_NAMES.index(cue)]


def kind_of_lead_in(lead_in: str) -> str:
    return KIND_NAMES[LEAD_INS.index(lead_in)]


def event_text(kind: str, form: str) -> str:
    """The `form` ("past", "base" or "state") wording of an event of `kind`."""
    return getattr(KIND_BY_NAME[kind], form)
