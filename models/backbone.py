"""Temp[CLIP]-style backbone (NExT-GQA's TempCLIP): frozen CLIP frame features and text-encoder features
projected to width D, a temporal transformer over the frames that also reads the question, and the
question-frame attention TempCLIP grounds from.

Shape notation: B batch, T frames, Lq question tokens, A options, La option tokens, Dv frame-feature width,
Dt text-feature width, D model width (`model.d_model`).

Answers are chosen by scoring each of the A "<question> <option>" candidates against the fused
video-question representation (see `models.cra`); A is free (5 for NExT-GQA, 4 for STAR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from models.layers import InputProjection, TransformerBlock, masked_mean, masked_softmax, sinusoidal_positions


@dataclass(frozen=True)
class BackboneConfig:
    # `tempclip` = the plain backbone without GSG, CMA and ECI (the paper's main baseline).
    variant: Literal["cra", "tempclip"] = "cra"
    d_model: int = 128
    layers: int = 2
    heads: int = 8
    dropout: float = 0.1

    def validate(self, key: str) -> None:
        if self.d_model % self.heads != 0:
            raise ValueError(
                f"params: `{key}.d_model` ({self.d_model}) must be divisible by `{key}.heads` ({self.heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"params: `{key}.dropout` must be in [0, 1), got {self.dropout}")


@dataclass
class BackboneOutput:
    """Encoded inputs at model width D."""

    frames: Tensor  # (B, T, D) question-aware frame features after the temporal transformer
    question: Tensor  # (B, D) pooled question feature
    candidates: Tensor  # (B, A, D) one feature per "<question> <option>" candidate


class TempCLIPBackbone(nn.Module):
    """Frame and text projections, then `layers` transformer blocks over the T frames.

    Each block is self-attention across frames (temporal context) followed by cross-attention from the
    frames to the question tokens, so every frame feature is conditioned on the question (TempCLIP
    concatenates a question proxy token to the frames; cross-attention gives the same fusion with a
    token-level view of the question).
    """

    def __init__(self, config: BackboneConfig, visual_dim: int, text_dim: int) -> None:
        super().__init__()
        D = config.d_model
        self.video_in = InputProjection(visual_dim, D, config.dropout)
        # One projection for all text features: they come from the same text encoder.
        self.text_in = InputProjection(text_dim, D, config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(D, config.heads, config.dropout, cross_attention=True) for _ in range(config.layers)
        )
        self.frame_norm = nn.LayerNorm(D)
        self.candidate_norm = nn.LayerNorm(D)

    def forward(
        self,
        video: Tensor,
        video_mask: Tensor,
        question_tokens: Tensor,
        question_mask: Tensor,
        question_pooled: Tensor,
        option_tokens: Tensor,
        option_mask: Tensor,
        qa_pooled: Tensor,
    ) -> BackboneOutput:
        B, T, _ = video.shape
        frames = self.video_in(video)  # (B, T, D)
        frames = frames + sinusoidal_positions(T, frames.shape[-1], frames.device)
        question_words = self.text_in(question_tokens)  # (B, Lq, D)
        for block in self.blocks:
            frames = block(frames, mask=video_mask, context=question_words, context_mask=question_mask)
        frames = self.frame_norm(frames)

        question = self.text_in(question_pooled)  # (B, D)
        # A candidate is its pooled "<question> <option>" feature plus the mean of its option's own
        # tokens, so the option wording is seen apart from the question that dominates the pooled text.
        option_words = masked_mean(self.text_in(option_tokens), option_mask)  # (B, A, D)
        candidates = self.candidate_norm(self.text_in(qa_pooled) + option_words)  # (B, A, D)
        return BackboneOutput(frames=frames, question=question, candidates=candidates)


class QuestionFrameAttention(nn.Module):
    """Question-conditioned attention over frames: a distribution over the T frames.

    Frame and question are projected, fused by an element-wise product (which contains their dot
    product as a special case) and scored by a small MLP; a masked softmax over T turns the scores
    into weights. This is what TempCLIP grounds from, and the attention GSG smooths.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.frame_proj = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model))
        self.question_proj = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model))
        self.score = nn.Sequential(
            nn.Linear(d_model, d_model // 2),
            nn.GELU(),
            # No bias: it would shift every frame's logit equally, so the softmax over frames ignores it
            # and its gradient is exactly zero (it could never learn).
            nn.Linear(d_model // 2, 1, bias=False),
        )

    def forward(self, frames: Tensor, question: Tensor, mask: Tensor | None) -> Tensor:
        """frames (B, T, D), question (B, D), mask (B, T) -> weights (B, T), zero on padded frames, sum 1."""
        B, T, D = frames.shape
        fused = self.frame_proj(frames) * self.question_proj(question)[:, None, :]  # (B, T, D)
        logits = self.score(fused).squeeze(-1)  # (B, T)
        return masked_softmax(logits, mask, dim=-1)


def pool_frames(frames: Tensor, weights: Tensor) -> Tensor:
    """Weighted pooling of frames: (B, T, D), (B, T) -> (B, D)."""
    return torch.einsum("btd,bt->bd", frames, weights)
