"""Temp[CLIP]-style backbone. Config only so far; the module lands with the model issue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class BackboneConfig:
    # `tempclip` = the plain backbone without GSG, CMA and ECI (the paper's main baseline).
    variant: Literal["cra", "tempclip"] = "cra"
    d_model: int = 256
    layers: int = 2
    heads: int = 8
    dropout: float = 0.1

    def validate(self, key: str) -> None:
        if self.d_model % self.heads != 0:
            raise ValueError(f"params: `{key}.d_model` ({self.d_model}) must be divisible by `{key}.heads` ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"params: `{key}.dropout` must be in [0, 1), got {self.dropout}")
