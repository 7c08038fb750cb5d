"""Gaussian Smoothing Grounding (GSG): question-conditioned attention over frames, smoothed in time by a
learnable 1-D Gaussian filter, then used to pool the frames into the grounded video feature.

Shape notation: B batch, T frames, D width, K kernel size (`gsg.kernel_size`).

Why smoothing: raw cross-modal attention is spiky and picks isolated frames; the answer's evidence is a
contiguous segment. Convolving the weights with a Gaussian spreads mass to neighbouring frames, so the
grounded span follows the segment rather than single spurious frames. Sigma is learnt (as log-sigma, so
it stays positive).

Data flow as the official `GroundingModule` (WissingChen/CRA-GQA `modules/m_cra/grounding.py`): frames
(after the temporal transformer, which does not read the question) and a query -> per-frame
probabilities -> Gaussian filter -> the smoothed weights pool the frames AND are what the post-hoc and
merged grounding rules read (`fatt = time_param["key"]` in `refine.py`). Where we differ:
- attention: the official scores `MLP(LN(v * tanh(v . q)))`; LayerNorm removes the scalar gate's
  magnitude, so the query acts almost only through its sign. We score `MLP(LN(W v) * LN(W' q))`
  (`QuestionFrameAttention`), so the query can select frames;
- renormalisation: the official applies a softmax to the smoothed probabilities, which squeezes them
  towards uniform (their values are <= 1, so max/min <= e); we divide by the sum, which keeps the shape;
- borders: the official zero-pads the convolution (mass lost at the ends); we renormalise the kernel at
  the borders and around padded frames (`smooth_frame_weights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.backbone import QuestionFrameAttention, pool_frames


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


def gaussian_kernel(kernel_size: int, sigma: Tensor | float) -> Tensor:
    """A centred 1-D Gaussian, (kernel_size,), normalised to sum 1: exp(-x^2 / (2 sigma^2)), x = -K//2..K//2.

    Differentiable in `sigma` (a 0-d tensor keeps the graph).
    """
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    offsets = torch.arange(kernel_size, dtype=sigma.dtype, device=sigma.device) - kernel_size // 2
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def smooth_frame_weights(weights: Tensor, mask: Tensor | None, kernel: Tensor) -> Tensor:
    """Gaussian-smooth per-frame weights over time; (B, T) -> (B, T), zero on padded frames, rows sum to 1.

    A normalised convolution: each output frame is the kernel-weighted mean over only those neighbours
    that exist (inside [0, T)) and are real frames (mask True), i.e. the kernel is renormalised at the
    borders and around padding. Plain zero padding would lose the kernel mass that falls outside and
    so bias the weights away from the first and last frames; none of the weight leaks outside [0, T)
    or onto padded frames. The result is renormalised to sum 1 over the real frames.
    """
    B, T = weights.shape
    valid = torch.ones_like(weights) if mask is None else mask.to(weights.dtype)
    filt = kernel.to(weights.dtype)[None, None, :]  # (1, 1, K)
    pad = kernel.shape[0] // 2
    numerator = F.conv1d((weights * valid)[:, None, :], filt, padding=pad)[:, 0]  # (B, T)
    coverage = F.conv1d(valid[:, None, :], filt, padding=pad)[:, 0]  # (B, T): kernel mass on real frames
    smoothed = numerator / coverage.clamp_min(1e-12) * valid
    return smoothed / smoothed.sum(dim=-1, keepdim=True).clamp_min(1e-12)


@dataclass
class GroundingOutput:
    """Per-frame grounding weights and the pooled (grounded) frame feature."""

    attention: Tensor  # (B, T) question-frame attention, before smoothing
    weights: Tensor  # (B, T) weights used for pooling and grounding (smoothed when smoothing is on)
    pooled: Tensor  # (B, D) frames pooled with `weights`


class GSG(nn.Module):
    """Question-frame attention -> Gaussian smoothing -> weighted pooling of the frames."""

    def __init__(self, config: GSGConfig, d_model: int) -> None:
        super().__init__()
        self.kernel_size = config.kernel_size
        self.smoothing = config.smoothing
        self.attention = QuestionFrameAttention(d_model)
        if not config.smoothing:
            self.log_sigma = None
        elif config.learnable_sigma:
            self.log_sigma = nn.Parameter(torch.tensor(math.log(config.sigma_init)))
        else:
            self.register_buffer("log_sigma", torch.tensor(math.log(config.sigma_init)))

    @property
    def sigma(self) -> Tensor | None:
        """The Gaussian's current standard deviation in frames (0-d), or None without smoothing."""
        return None if self.log_sigma is None else self.log_sigma.exp()

    def forward(self, frames: Tensor, question: Tensor, mask: Tensor | None) -> GroundingOutput:
        """frames (B, T, D), question (B, D), mask (B, T) -> GroundingOutput."""
        B, T, D = frames.shape
        attention = self.attention(frames, question, mask)  # (B, T)
        if self.smoothing:
            kernel = gaussian_kernel(self.kernel_size, self.sigma)  # (K,)
            weights = smooth_frame_weights(attention, mask, kernel)
        else:
            weights = attention
        return GroundingOutput(attention=attention, weights=weights, pooled=pool_frames(frames, weights))
