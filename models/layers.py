"""Shared building blocks: one attention primitive for self- and cross-attention, MLPs, masking helpers.

Shape notation: B batch, L query tokens, S key/context tokens, H heads, D width, Dc context width.
Masks are boolean with True = a real (attendable) element.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (lucidrains style).

    `context=None` is self-attention over `x`; otherwise `x` attends over `context`. `mask` (B, S) hides
    padded keys; `bias` (B or 1, S) is added to the logits before the softmax (e.g. a log prior over
    dictionary entries, so the weights become proportional to prior * exp(score)).
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        context_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"attention width {dim} must be divisible by the number of heads {heads}")
        context_dim = dim if context_dim is None else context_dim
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.to_q = nn.Linear(dim, dim)
        # No key bias: it adds q . b_k to every logit of a query's row, which the softmax over keys ignores
        # (its gradient is exactly zero; it could never learn).
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim)
        self.to_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x (B, L, D), context (B or 1, S, Dc) -> (B, L, D); with `return_weights` also (B, L, S) head-averaged."""
        context = x if context is None else context
        q = rearrange(self.to_q(x), "b l (h d) -> b h l d", h=self.heads)
        k = rearrange(self.to_k(context), "b s (h d) -> b h s d", h=self.heads)
        v = rearrange(self.to_v(context), "b s (h d) -> b h s d", h=self.heads)
        # matmul (not einsum) so a context with batch 1 (a shared dictionary) broadcasts over B.
        logits = torch.matmul(q, k.transpose(-1, -2)) * self.scale  # (B, H, L, S)
        if bias is not None:
            logits = logits + rearrange(bias, "b s -> b 1 1 s")
        if mask is not None:
            keep = rearrange(mask, "b s -> b 1 1 s")
            # finfo.min rather than -inf: a row with no valid key gives a finite softmax, zeroed below.
            logits = logits.masked_fill(~keep, torch.finfo(logits.dtype).min)
        weights = logits.softmax(dim=-1)
        if mask is not None:
            weights = weights * keep  # a query with no valid key attends to nothing (output = bias of to_out)
        out = torch.matmul(self.dropout(weights), v)  # (B, H, L, d)
        out = self.to_out(rearrange(out, "b h l d -> b l (h d)"))
        if return_weights:
            return out, weights.mean(dim=1)
        return out


class FeedForward(nn.Module):
    """Position-wise MLP: Linear -> GELU -> Linear, with dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, out_dim: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim if out_dim is None else out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention to a context, MLP; residual around each."""

    def __init__(self, dim: int, heads: int, dropout: float, cross_attention: bool, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(dim)
        self.self_attention = Attention(dim, heads, dropout=dropout)
        if cross_attention:
            self.cross_norm = nn.LayerNorm(dim)
            self.cross_attention = Attention(dim, heads, dropout=dropout)
        else:
            self.cross_norm = None
            self.cross_attention = None
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_ratio * dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """x (B, L, D), mask (B, L); context (B, S, D), context_mask (B, S) -> (B, L, D)."""
        x = x + self.dropout(self.self_attention(self.self_norm(x), mask=mask))
        if self.cross_attention is not None:
            if context is None:
                raise ValueError("this TransformerBlock has cross-attention: pass a context")
            x = x + self.dropout(self.cross_attention(self.cross_norm(x), context=context, mask=context_mask))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


class InputProjection(nn.Module):
    """Frozen-encoder features -> model width: Linear -> GELU -> LayerNorm -> Dropout (as TempCLIP's video input)."""

    def __init__(self, in_dim: int, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.norm(nn.functional.gelu(self.linear(x))))


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed sine/cosine position codes (Vaswani et al.), (length, dim); no maximum length to configure."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return codes


def masked_softmax(logits: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax over `dim` where masked-out entries get exactly 0 (all-masked rows give all zeros)."""
    if mask is None:
        return logits.softmax(dim=dim)
    weights = logits.masked_fill(~mask, torch.finfo(logits.dtype).min).softmax(dim=dim)
    return weights * mask


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the token axis: x (..., L, D), mask (..., L) -> (..., D); all-masked rows give zeros."""
    if mask is None:
        return x.mean(dim=-2)
    weights = mask.to(x.dtype)[..., None]
    return (x * weights).sum(dim=-2) / weights.sum(dim=-2).clamp_min(1.0)


def init_weights(module: nn.Module) -> None:
    """TempCLIP's initialisation: N(0, 0.02) linear weights, zero biases, identity LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
