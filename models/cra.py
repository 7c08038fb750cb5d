"""The composed CRA model (Cross-modal Causal Relation Alignment, CVPR 2025) and its Temp[CLIP] baseline.

Shape notation: B batch, T frames, Lq question tokens, A options, La option tokens, C question choices
(the true question + sampled negatives), Dv frame-feature width, Dt text-feature width, D model width,
Kv visual clusters, Kl language clusters, G = 8 graph nodes.

Forward pass (variant `cra`), following the official data flow (WissingChen/CRA-GQA, `models/cra.py`
`refine_forward` and `modules/m_cra/refine.py` `Decoder.forward`):
  backbone      frames (B, T, D) from the frames alone; candidates (B, A, D), one per "<question> <option>"
  query         the question (B, D) (`model.grounding_query: max_qa`: the element-wise max over the pooled
                QA texts, the official VQA-mode `qsn_g`)
  GSG           query-frame attention (B, T) -> Gaussian smoothing -> weights (B, T) -> pooled (B, D)
  video head    grounded video (B, D); ECI front-door on it when `eci.visual` (mediator: the grounded video)
  ECI back-door candidates (B, A, D) deconfounded when `eci.linguistic`
  scoring       option_logits (B, A) = scale * cos(grounded video, candidate)
Training-only terms (computed only when the batch carries `question_choices`, i.e. in training):
  VQ            a second grounding pass on the *true question* (the official VQ mode): its grounded
                video scores the C question choices (true first, then sampled negatives, a share of them
                from the same video), question_logits (B, C); the target is choice 0
  CMA           InfoNCE(grounded video, true QA candidate) over the batch when `cma.enabled`
Variant `tempclip` has no Gaussian smoothing, ECI or CMA: it pools (and grounds) with the plain
query-frame attention; it keeps the VQ pass, as the official TempCLIP pipeline (`vq` loss) does.
Variant `blind` is the text-only control: its "video" is one learnt vector, the same for every question
(frame weights uniform, no VQ pass), so it can only answer from the question and option texts.

Where we differ from the official code on purpose (each module's docstring says more): answers are
scored by a scaled cosine (official: a dot product); a candidate adds its option tokens' mean to the
pooled "<question> <option>" feature; the GSG attention fuses frame and query by an element-wise
product (official: a scalar gate that LayerNorm then mostly cancels); the smoothed weights are
renormalised by their sum (official: a softmax, which flattens them); the front-door reads no frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.backbone import BackboneConfig, QuestionFrameAttention, TempCLIPBackbone, pool_frames
from models.cma import CMAConfig, CrossModalAlignment
from models.eci import ECI, ECIConfig, LanguageDictionary, VisualDictionary
from models.gsg import GSG, GSGConfig
from models.layers import init_weights

# CLIP's initial logit scale (1 / 0.07) and its cap (100), applied to cosine similarities.
LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100.0)


@dataclass(frozen=True)
class CRAConfig:
    """Everything needed to rebuild the model's modules and buffer shapes (saved as JSON with a checkpoint)."""

    visual_dim: int  # Dv
    text_dim: int  # Dt
    model: BackboneConfig = field(default_factory=BackboneConfig)
    gsg: GSGConfig = field(default_factory=GSGConfig)
    cma: CMAConfig = field(default_factory=CMAConfig)
    eci: ECIConfig = field(default_factory=ECIConfig)
    visual_clusters: int = 0  # Kv; 0 when the front-door intervention is off
    language_clusters: int = 0  # Kl; 0 when the back-door intervention is off

    @property
    def uses_visual_intervention(self) -> bool:
        return self.model.variant == "cra" and self.eci.visual

    @property
    def uses_linguistic_intervention(self) -> bool:
        return self.model.variant == "cra" and self.eci.linguistic

    def validate(self) -> None:
        if self.model.variant not in ("cra", "tempclip", "blind"):
            raise ValueError(f"model.variant must be cra, tempclip or blind, got {self.model.variant!r}")
        self.model.validate("model")
        self.gsg.validate("gsg")
        self.cma.validate("cma")
        if self.visual_dim < 1 or self.text_dim < 1:
            raise ValueError(f"feature widths must be >= 1, got visual_dim={self.visual_dim}, text_dim={self.text_dim}")
        if self.uses_visual_intervention and self.visual_clusters < 1:
            raise ValueError("eci.visual is on: visual_clusters must be >= 1 (the visual dictionary size)")
        if self.uses_linguistic_intervention and self.language_clusters < 1:
            raise ValueError("eci.linguistic is on: language_clusters must be >= 1 (the language dictionary size)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CRAConfig:
        """Inverse of `to_dict` (e.g. the JSON saved beside a checkpoint)."""
        sections = {"model": BackboneConfig, "gsg": GSGConfig, "cma": CMAConfig, "eci": ECIConfig}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown CRAConfig key(s) {unknown}; allowed: {sorted(known)}")
        kwargs = {k: (sections[k](**v) if k in sections else v) for k, v in data.items()}
        return cls(**kwargs)


def _as_bool(mask: Tensor) -> Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def _as_float(x: Tensor) -> Tensor:
    # Features may be stored as float16 (params `features.text.dtype`); the model computes in float32.
    return x.float() if x.dtype != torch.float32 else x


@dataclass
class CRABatch:
    """One batch of precomputed features. Masks: True = a real frame / token (int masks are converted)."""

    video: Tensor  # (B, T, Dv) frame features
    video_mask: Tensor  # (B, T) bool
    question_tokens: Tensor  # (B, Lq, Dt)
    question_mask: Tensor  # (B, Lq) bool
    question_pooled: Tensor  # (B, Dt)
    option_tokens: Tensor  # (B, A, La, Dt) the option texts alone
    option_mask: Tensor  # (B, A, La) bool
    qa_pooled: Tensor  # (B, A, Dt) pooled "<question> <option>" for each option
    answer: Tensor | None = None  # (B,) long, index of the right option; None at inference
    # Training only (None at evaluation):
    question_choices: Tensor | None = None  # (B, C, Dt) pooled questions: the true one first, then negatives
    frame_labels: Tensor | None = None  # (B, T) 1.0 on ground-truth frames (grounding supervision)
    supervise_grounding: Tensor | None = None  # (B,) bool: which rows' frame_labels supervise the weights

    def __post_init__(self) -> None:
        for name in (
            "video",
            "question_tokens",
            "question_pooled",
            "option_tokens",
            "qa_pooled",
            "question_choices",
            "frame_labels",
        ):
            if getattr(self, name) is not None:
                setattr(self, name, _as_float(getattr(self, name)))
        for name in ("video_mask", "question_mask", "option_mask"):
            setattr(self, name, _as_bool(getattr(self, name)))
        B, T, _ = self.video.shape
        _, A, La, Dt = self.option_tokens.shape
        Lq = self.question_tokens.shape[1]
        expected = {
            "video_mask": (B, T),
            "question_tokens": (B, Lq, Dt),
            "question_mask": (B, Lq),
            "question_pooled": (B, Dt),
            "option_tokens": (B, A, La, Dt),
            "option_mask": (B, A, La),
            "qa_pooled": (B, A, Dt),
        }
        if self.answer is not None:
            expected["answer"] = (B,)
        if self.question_choices is not None:
            expected["question_choices"] = (B, self.question_choices.shape[1], Dt)
        if self.frame_labels is not None:
            expected["frame_labels"] = (B, T)
        if self.supervise_grounding is not None:
            expected["supervise_grounding"] = (B,)
        for name, shape in expected.items():
            actual = tuple(getattr(self, name).shape)
            if actual != shape:
                raise ValueError(f"CRABatch.{name} has shape {actual}, expected {shape} (B={B}, T={T}, A={A})")

    @property
    def num_options(self) -> int:
        return self.option_tokens.shape[1]

    def to(self, device: torch.device | str) -> CRABatch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return CRABatch(**{k: (v.to(device) if v is not None else None) for k, v in moved.items()})


@dataclass
class CRAOutput:
    """What one forward pass returns. Optional fields are None when their component is off or, for the
    training-only terms, when the batch has no `question_choices` (evaluation)."""

    option_logits: Tensor  # (B, A) answer scores
    frame_weights: Tensor  # (B, T) the weights used to pool and to ground (after smoothing), rows sum to 1
    frame_attention: Tensor  # (B, T) query-frame attention before smoothing (== frame_weights without it)
    grounded_video: Tensor  # (B, D) grounded video feature (after the front-door intervention when on)
    question_logits: Tensor | None = None  # (B, C) VQ pass: video grounded on the true question vs choices
    alignment_loss: Tensor | None = None  # () CMA InfoNCE; training only
    sigma: Tensor | None = None  # () the Gaussian's current sigma in frames; None without smoothing
    visual_intervention_weights: Tensor | None = None  # (B, Kv) P(z | grounded segment) over the visual dictionary
    linguistic_intervention_weights: Tensor | None = None  # (B, A, Kl) P(z | candidate) over the graph dictionary

    @property
    def prediction(self) -> Tensor:
        """(B,) index of the highest-scoring option."""
        return self.option_logits.argmax(dim=-1)


class CRA(nn.Module):
    """CRA (`model.variant: cra`), the Temp[CLIP] baseline (`tempclip`) or the text-only control (`blind`).
    Build with `from_config`."""

    def __init__(self, config: CRAConfig) -> None:
        """Modules and zero-filled dictionary buffers of `config`'s sizes (load a checkpoint's state_dict next)."""
        super().__init__()
        config.validate()
        self.config = config
        D = config.model.d_model
        self.backbone = TempCLIPBackbone(config.model, config.visual_dim, config.text_dim)
        is_cra = config.model.variant == "cra"
        self.blind = config.model.variant == "blind"
        self.question_frame_attention = QuestionFrameAttention(D) if config.model.variant == "tempclip" else None
        self.gsg = GSG(config.gsg, D) if is_cra else None
        self.cma = CrossModalAlignment(config.cma, D) if is_cra and config.cma.enabled else None
        if config.uses_visual_intervention or config.uses_linguistic_intervention:
            self.eci = ECI(
                config.eci, D, config.visual_dim, config.text_dim, config.visual_clusters, config.language_clusters
            )
        else:
            self.eci = None
        # TempCLIP's projection of the pooled video before scoring.
        self.video_head = nn.Sequential(nn.Dropout(config.model.dropout), nn.Linear(D, D))
        self.apply(init_weights)
        if self.eci is not None:
            self.eci.reset_residuals()
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))
        # The blind control's stand-in for a grounded video: one learnt vector for every question.
        self.blind_video = nn.Parameter(0.02 * torch.randn(D)) if self.blind else None

    @classmethod
    def from_config(
        cls,
        sections: Any,
        *,
        visual_dim: int,
        text_dim: int,
        visual_dictionary: VisualDictionary | None = None,
        language_dictionary: LanguageDictionary | None = None,
    ) -> CRA:
        """Build a model from config sections and load the confounder dictionaries.

        `sections` is anything with `.model`, `.gsg`, `.cma`, `.eci` (the pipeline's Params, or a CRAConfig).
        A dictionary is required exactly when its intervention is used (variant cra with `eci.visual` /
        `eci.linguistic`); otherwise it is ignored.
        """
        config = CRAConfig(
            visual_dim=visual_dim,
            text_dim=text_dim,
            model=sections.model,
            gsg=sections.gsg,
            cma=sections.cma,
            eci=sections.eci,
        )
        missing = []
        if config.uses_visual_intervention and visual_dictionary is None:
            missing.append("eci.visual is on but no visual confounder dictionary was given")
        if config.uses_linguistic_intervention and language_dictionary is None:
            missing.append("eci.linguistic is on but no language confounder dictionary was given")
        if missing:
            raise ValueError(
                "; ".join(missing) + " (build them with the `clusters` stage, or switch the intervention off)"
            )
        if config.uses_visual_intervention and visual_dictionary.centroids.shape[1] != visual_dim:
            raise ValueError(
                f"visual dictionary centroids are {visual_dictionary.centroids.shape[1]}-d but the frame features "
                f"are {visual_dim}-d: rebuild the dictionary from the same visual features"
            )
        if config.uses_linguistic_intervention and language_dictionary.prototypes.shape[2] != text_dim:
            raise ValueError(
                f"language dictionary prototypes are {language_dictionary.prototypes.shape[2]}-d but the text "
                f"features are {text_dim}-d: rebuild the dictionary from the same text features"
            )
        config = dataclasses.replace(
            config,
            visual_clusters=visual_dictionary.centroids.shape[0] if config.uses_visual_intervention else 0,
            language_clusters=language_dictionary.prototypes.shape[0] if config.uses_linguistic_intervention else 0,
        )
        model = cls(config)
        if model.eci is not None:
            model.eci.load_dictionaries(visual_dictionary, language_dictionary)
        return model

    def _check_widths(self, batch: CRABatch) -> None:
        for name, width, expected in (
            ("video", batch.video.shape[-1], self.config.visual_dim),
            ("question_tokens", batch.question_tokens.shape[-1], self.config.text_dim),
        ):
            if width != expected:
                raise ValueError(f"CRABatch.{name} is {width}-d but the model was built for {expected}-d features")

    def _ground(
        self, frames: Tensor, query: Tensor, mask: Tensor, fixed_weights: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Ground and pool: frames (B, T, D), query (B, D) -> attention (B, T), weights (B, T), video (B, D),
        front-door weights (B, Kv) or None. The only path from the frames to the answer.

        `fixed_weights` (B, T) replace the learnt grounding (the ground-truth pooling control)."""
        if fixed_weights is not None:
            attention = weights = fixed_weights
            pooled = pool_frames(frames, weights)
        elif self.gsg is not None:
            grounding = self.gsg(frames, query, mask)
            attention, weights, pooled = grounding.attention, grounding.weights, grounding.pooled
        else:  # tempclip: ground and pool with the plain query-frame attention
            attention = self.question_frame_attention(frames, query, mask)
            weights, pooled = attention, pool_frames(frames, attention)
        video = self.video_head(pooled)  # (B, D)
        visual_weights = None
        if self.eci is not None and self.eci.visual is not None:
            visual = self.eci.visual(video, self.backbone.standardize)
            video, visual_weights = visual.feature, visual.weights
        return attention, weights, video, visual_weights

    def _ground_truth_weights(self, batch: CRABatch) -> Tensor:
        if batch.frame_labels is None:
            raise ValueError("model.ground_truth_pooling needs batches with frame_labels (the ground-truth frames)")
        labels = batch.frame_labels * batch.video_mask
        return labels / labels.sum(dim=-1, keepdim=True).clamp_min(1e-12)  # (B, T)

    def _blind_forward(self, batch: CRABatch, candidates: Tensor) -> CRAOutput:
        B = candidates.shape[0]
        video = self.video_head(self.blind_video.expand(B, -1))  # (B, D), the same for every question
        real = batch.video_mask.float()
        uniform = real / real.sum(dim=-1, keepdim=True).clamp_min(1.0)  # (B, T): nothing is grounded
        scale = self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
        option_logits = scale * torch.einsum("bd,bad->ba", F.normalize(video, dim=-1), F.normalize(candidates, dim=-1))
        return CRAOutput(
            option_logits=option_logits, frame_weights=uniform, frame_attention=uniform, grounded_video=video
        )

    def forward(self, batch: CRABatch) -> CRAOutput:
        self._check_widths(batch)
        B, T, Dv = batch.video.shape
        encoded = self.backbone(
            batch.video,
            batch.video_mask,
            batch.question_tokens,
            batch.question_mask,
            batch.question_pooled,
            batch.option_tokens,
            batch.option_mask,
            batch.qa_pooled,
        )
        candidates = encoded.candidates  # (B, A, D)
        if self.blind:
            return self._blind_forward(batch, candidates)
        if self.config.model.grounding_query == "question":
            query = encoded.question  # (B, D)
        else:  # "max_qa": the official VQA-mode query, the element-wise max over the pooled QA texts
            query = self.backbone.text_in(batch.qa_pooled).max(dim=1).values  # (B, D)
        fixed = self._ground_truth_weights(batch) if self.config.model.ground_truth_pooling else None
        attention, weights, video, visual_weights = self._ground(encoded.frames, query, batch.video_mask, fixed)

        linguistic_weights = None
        if self.eci is not None and self.eci.linguistic is not None:
            linguistic = self.eci.linguistic(candidates)
            candidates, linguistic_weights = linguistic.feature, linguistic.weights

        scale = self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
        video_unit = F.normalize(video, dim=-1)
        option_logits = scale * torch.einsum("bd,bad->ba", video_unit, F.normalize(candidates, dim=-1))

        question_logits = alignment_loss = None
        if batch.question_choices is not None:  # training only
            # VQ pass: ground on the true question alone, then tell it from the sampled questions.
            true_question = self.backbone.text_in(batch.question_choices[:, 0])  # (B, D)
            _, _, vq_video, _ = self._ground(encoded.frames, true_question, batch.video_mask)
            choices = self.backbone.text_in(batch.question_choices)  # (B, C, D)
            question_logits = scale * torch.einsum(
                "bd,bcd->bc", F.normalize(vq_video, dim=-1), F.normalize(choices, dim=-1)
            )
            if self.cma is not None and batch.answer is not None:
                qa_feature = candidates[torch.arange(B, device=candidates.device), batch.answer]  # (B, D)
                alignment_loss = self.cma(video, qa_feature)

        return CRAOutput(
            option_logits=option_logits,
            frame_weights=weights,
            frame_attention=attention,
            grounded_video=video,
            question_logits=question_logits,
            alignment_loss=alignment_loss,
            sigma=None if self.gsg is None else self.gsg.sigma,
            visual_intervention_weights=visual_weights,
            linguistic_intervention_weights=linguistic_weights,
        )


__all__ = [
    "CRA",
    "CRABatch",
    "CRAConfig",
    "CRAOutput",
    "LanguageDictionary",
    "VisualDictionary",
]
