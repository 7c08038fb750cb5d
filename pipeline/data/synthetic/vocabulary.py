"""The benchmark's closed vocabulary: object colours and shapes, event kinds, the planted nuisances.

Everything a question, an option or a frame can show is listed here, once, so the generator,
the renderer and the dataset card agree. The vocabulary is deliberately small and regular (6
colours, 3 shapes, 5 event kinds, 4 question templates) so that a model on random-init CLIP
frame features and MiniLM text features can learn it in minutes.

Why these event kinds: every kind is a *temporary state* of one object that is visible in any
single frame inside the event (big, small, white, another colour, absent) and reverts at the
event's end. A random-init ViT-S-32 linearly separates colour (~100 %) and size (~99 %) of an
object in a 160x120 frame, so all five kinds are recognisable frame by frame; motion, shape and
position changes (60-75 %) are left out on purpose.

Colour changes and naming: an object is always named by its *own* colour ("the red circle"); a
`recolour` event turns it, for the event only, into one of the RECOLOURS, which no object ever owns,
so an object's name never matches another object's current look and a recoloured object is
recognisable in a single frame (a linear probe on the default features could not tell "red circle
turned blue" from "a blue circle" when recolours were drawn from the object colours).

Confounder pairing: the k-th event kind is paired with the k-th background colour (the visual
nuisance) and the k-th question lead-in (the linguistic nuisance).
"""

from __future__ import annotations

from dataclasses import dataclass

# Object colours (RGB), bright and far apart in hue; flash is white, so white is not among them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 80, 255),
    "yellow": (245, 225, 30),
    "purple": (160, 50, 230),
    "cyan": (30, 210, 220),
}
# Colours only a `recolour` event shows (never an object's own colour), distinct from COLOURS and white.
RECOLOURS: dict[str, tuple[int, int, int]] = {
    "orange": (255, 140, 0),
    "pink": (255, 110, 200),
}
PALETTE: dict[str, tuple[int, int, int]] = {**COLOURS, **RECOLOURS}
FLASH_RGB = (255, 255, 255)

SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class EventKind:
    """One kind of event and its three surface forms ({colour} only in `recolour`)."""

    name: str
    past: str  # "what did X do ..." options and "after/before Y <past>" references
    base: str  # "why did X <base>"
    state: str  # "while Y <state>"


# The answer categories, in pairing order (index k <-> BACKGROUNDS[k] <-> LEAD_INS[k]).
EVENT_KINDS: tuple[EventKind, ...] = (
    EventKind("grow", past="grew bigger", base="grow bigger", state="was big"),
    EventKind("shrink", past="shrank", base="shrink", state="was small"),
    EventKind("flash", past="flashed", base="flash", state="was flashing"),
    EventKind("recolour", past="turned {colour}", base="turn {colour}", state="was {colour}"),
    EventKind("disappear", past="disappeared", base="disappear", state="was gone"),
)
KIND_NAMES: tuple[str, ...] = tuple(kind.name for kind in EVENT_KINDS)
KIND_BY_NAME: dict[str, EventKind] = {kind.name: kind for kind in EVENT_KINDS}

# Visual nuisance: the background colour (RGB), dark and desaturated so every object stands out.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (48, 48, 48),
    "navy": (20, 28, 72),
    "brown": (70, 40, 20),
    "pine": (20, 60, 40),
    "plum": (64, 24, 56),
}
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUNDS)

# Linguistic nuisance: the words a question opens with. No commas: the CSV is written unquoted.
LEAD_INS: tuple[str, ...] = (
    "in the video",
    "in this clip",
    "on the screen",
    "in the scene",
    "in the animation",
)

assert len(EVENT_KINDS) == len(BACKGROUNDS) == len(LEAD_INS), "one nuisance value per answer category"

# Relative object sizes: radius as a fraction of the object's cell (a third of the width).
SIZE_NORMAL = 0.24
SIZE_BIG = 0.48
SIZE_SMALL = 0.14  # 0.11 was too small for 32-px ViT patches: a probe confused shrunk with gone


def paired_background(kind: str) -> str:
    """The background colour planted with answer category `kind`."""
    return BACKGROUND_NAMES[KIND_NAMES.index(kind)]


def paired_lead_in(kind: str) -> str:
    """The question lead-in planted with answer category `kind`."""
    return LEAD_INS[KIND_NAMES.index(kind)]


def event_text(kind: str, form: str, colour: str | None = None) -> str:
    """The `form` ("past", "base" or "state") wording of an event of `kind`."""
    template = getattr(KIND_BY_NAME[kind], form)
    if "{colour}" in template:
        if colour is None:
            raise ValueError(f"event kind {kind!r} needs a colour")
        return template.format(colour=colour)
    return template
