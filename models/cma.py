"""Cross-Modal Alignment (CMA). Config only so far; the module lands with the model issue."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CMAConfig:
    enabled: bool = True
    temperature: float = 0.07
    weight: float = 0.5

    def validate(self, key: str) -> None:
        if self.temperature <= 0:
            raise ValueError(f"params: `{key}.temperature` must be > 0, got {self.temperature}")
        if self.weight < 0:
            raise ValueError(f"params: `{key}.weight` must be >= 0, got {self.weight}")
