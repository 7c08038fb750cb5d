"""Temp[CLIP]-style backbone (NExT-GQA's TempCLIP): frozen CLIP frame features and text-encoder features
projected to width D, a temporal transformer over the frames, and the question-frame attention that
pools (and grounds) the frames.

Data flow, as the official CRA (WissingChen/CRA-GQA `models/cra.py` `refine_forward`, `modules/m_cra/
refine.py` `Decoder`): the temporal transformer reads the frames only (self-attention + MLP); the
question reaches the video only through the grounding weights. `model.frames_read_question: true`
adds cross-attention from every frame to the question tokens in each block (this project's earlier
backbone, kept as a study row): then the pooled feature carries the question whatever the weights.

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
    # `tempclip` = the plain backbone without GSG, CMA and ECI (the paper's main baseline); `blind` = a
    # text-only control that never reads the frames (answers from the question and options alone).
    variant: Literal["cra", "tempclip", "blind"] = "cra"
    d_model: int = 64
    layers: int = 2
    heads: int = 8
    dropout: float = 0.0
    # false (default, as the official CRA): the frames never see the question before grounding.
    frames_read_question: bool = False
    # Standardise frame features with the training frames' per-dimension mean and std (buffers set by
    # the train stage, saved with the checkpoint). Not in the official code (CLIP features are used raw);
    # random-init features are a large constant vector plus small variations (measured on the synthetic
    # default: mean norm 19.3, centred norm 1.2), which a small model cannot learn from unscaled.
    standardize_video: bool = True
    # What the answer pass grounds on: the question (default), or `max_qa`, the element-wise max over the
    # A pooled "<question> <option>" texts, as the official VQA mode (`qsn_g = answer_g.max(dim=1)`).
    # Measured on the synthetic default with oracle features: max_qa learns slower (38 % vs 72 % Acc@QA
    # after 12 epochs), so the question is the default; the VQ pass grounds on the question either way.
    grounding_query: Literal["question", "max_qa"] = "question"
    # Upper-bound control: pool the ground-truth frames instead of the learnt weights (the batch must
    # carry `frame_labels`, in training and at evaluation). Shows what perfect grounding buys.
    ground_truth_pooling: bool = False

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

    # (B, T, D) frame features after the temporal transformer (question-aware only with
    # `frames_read_question`); None when not read (the blind control)
    frames: Tensor | None
    question: Tensor  # (B, D) pooled question feature
    candidates: Tensor  # (B, A, D) one feature per "<question> <option>" candidate


class TempCLIPBackbone(nn.Module):
    """Frame and text projections, then `layers` transformer blocks over the T frames.

    Each block is self-attention across frames (temporal context) and an MLP. With
    `frames_read_question` each block also cross-attends from the frames to the question tokens
    (TempCLIP NG+ concatenates a question proxy token to the frames instead; either way every frame
    feature is then conditioned on the question).
    """

    def __init__(self, config: BackboneConfig, visual_dim: int, text_dim: int) -> None:
        super().__init__()
        D = config.d_model
        self.standardize_video = config.standardize_video
        self.register_buffer("video_mean", torch.zeros(visual_dim))
        self.register_buffer("video_std", torch.ones(visual_dim))
        # One projection for all text features: they come from the same text encoder.
        self.text_in = InputProjection(text_dim, D, config.dropout)
        self.candidate_norm = nn.LayerNorm(D)
        self.frames_read_question = config.frames_read_question
        # The blind control has no frame encoder at all (nothing of it could learn).
        self.reads_frames = config.variant != "blind"
        if self.reads_frames:
            self.video_in = InputProjection(visual_dim, D, config.dropout)
            self.blocks = nn.ModuleList(
                TransformerBlock(D, config.heads, config.dropout, cross_attention=config.frames_read_question)
                for _ in range(config.layers)
            )
            self.frame_norm = nn.LayerNorm(D)

    @torch.no_grad()
    def set_video_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Per-dimension mean and std (Dv,) of the training frames, for `standardize_video`."""
        if mean.shape != self.video_mean.shape or std.shape != self.video_std.shape:
            raise ValueError(
                f"video statistics must be ({self.video_mean.shape[0]},), got {tuple(mean.shape)}, {tuple(std.shape)}"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("video statistics must be finite with std > 0")
        self.video_mean.copy_(mean)
        self.video_std.copy_(std)

    def standardize(self, video: Tensor) -> Tensor:
        """(..., Dv) raw frame features -> standardised ones (unchanged without `standardize_video`)."""
        return (video - self.video_mean) / self.video_std if self.standardize_video else video

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
        """`frames` is None for the blind control, which has no frame encoder."""
        B, T, _ = video.shape
        frames = None
        if self.reads_frames:
            frames = self.video_in(self.standardize(video))  # (B, T, D)
            frames = frames + sinusoidal_positions(T, frames.shape[-1], frames.device)
            question_words = self.text_in(question_tokens) if self.frames_read_question else None  # (B, Lq, D)
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
            # No bias: a constant added to every frame's logit cannot change a softmax over frames.
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
