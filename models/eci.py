"""Explicit Causal Intervention (ECI). Config only so far; the module lands with the model issue."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ECIConfig:
    # Front-door intervention on the visual side (visual confounder dictionary).
    visual: bool = True
    # Back-door intervention on the language side (semantic-graph dictionary).
    linguistic: bool = True
