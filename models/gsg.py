"""Gaussian Smoothing Grounding (GSG). Config only so far; the module lands with the model issue."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GSGConfig:
    kernel_size: int = 5
    sigma_init: float = 1.0
    learnable_sigma: bool = True
    # false = the paper's "w/o Gaussian smoothing" ablation.
    smoothing: bool = True

    def validate(self, key: str) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"params: `{key}.kernel_size` must be a positive odd integer, got {self.kernel_size}")
        if self.sigma_init <= 0:
            raise ValueError(f"params: `{key}.sigma_init` must be > 0, got {self.sigma_init}")
