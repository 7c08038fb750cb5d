"""The composed CRA model (Cross-modal Causal Relation Alignment, CVPR 2025) and its Temp[CLIP] baseline.

Shape notation: B batch, T frames, Lq question tokens, A options, La option tokens, Dv frame-feature width,
Dt text-feature width, D model width, Kv visual clusters, Kl language clusters, G = 8 graph nodes.

Forward pass (variant `cra`):
  backbone      frames (B, T, D) read the question; question (B, D); candidates (B, A, D)
  GSG           question-frame attention (B, T) -> Gaussian smoothing -> weights (B, T) -> pooled (B, D)
  video head    grounded video (B, D); ECI front-door on it when `eci.visual`
  ECI back-door candidates (B, A, D) deconfounded when `eci.linguistic`
  scoring       option_logits (B, A) = scale * cos(grounded video, candidate)
                question_logits (B, B) = scale * cos(grounded video_i, question_j)
  CMA           InfoNCE(grounded video, true QA candidate) when `cma.enabled`
Variant `tempclip` has no GSG, ECI or CMA: it pools the frames with the plain question-frame attention,
which is also what it grounds with.
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
        if self.model.variant not in ("cra", "tempclip"):
            raise ValueError(f"model.variant must be cra or tempclip, got {self.model.variant!r}")
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

    def __post_init__(self) -> None:
        for name in ("video", "question_tokens", "question_pooled", "option_tokens", "qa_pooled"):
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
    """What one forward pass returns. Optional fields are None when their component is off."""

    option_logits: Tensor  # (B, A) answer scores
    frame_weights: Tensor  # (B, T) the weights used for grounding (after smoothing), rows sum to 1, 0 on padding
    frame_attention: Tensor  # (B, T) question-frame attention before smoothing (== frame_weights without it)
    grounded_video: Tensor  # (B, D) grounded video feature (after the front-door intervention when on)
    qa_feature: Tensor  # (B, D) the true answer's candidate feature when `answer` is given, else the predicted one's
    question_logits: Tensor  # (B, B) grounded video i vs. pooled question j (question discrimination)
    question_targets: Tensor  # (B, B) target distribution of row i: uniform over the batch's copies of question i
    alignment_loss: Tensor | None = None  # () CMA InfoNCE; None without CMA or without `answer`
    sigma: Tensor | None = None  # () the Gaussian's current sigma in frames; None without smoothing
    visual_intervention_weights: Tensor | None = None  # (B, Kv) P(z | grounded segment) over the visual dictionary
    linguistic_intervention_weights: Tensor | None = None  # (B, A, Kl) P(z | candidate) over the graph dictionary

    @property
    def prediction(self) -> Tensor:
        """(B,) index of the highest-scoring option."""
        return self.option_logits.argmax(dim=-1)


class CRA(nn.Module):
    """CRA (`model.variant: cra`) or the Temp[CLIP] baseline (`tempclip`). Build with `from_config`."""

    def __init__(self, config: CRAConfig) -> None:
        """Modules and zero-filled dictionary buffers of `config`'s sizes (load a checkpoint's state_dict next)."""
        super().__init__()
        config.validate()
        self.config = config
        D = config.model.d_model
        self.backbone = TempCLIPBackbone(config.model, config.visual_dim, config.text_dim)
        is_cra = config.model.variant == "cra"
        self.question_frame_attention = None if is_cra else QuestionFrameAttention(D)
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
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

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
        if self.gsg is not None:
            grounding = self.gsg(encoded.frames, encoded.question, batch.video_mask)
            frame_attention, frame_weights, pooled = grounding.attention, grounding.weights, grounding.pooled
        else:  # tempclip: ground and pool with the plain question-frame attention
            frame_attention = self.question_frame_attention(encoded.frames, encoded.question, batch.video_mask)
            frame_weights, pooled = frame_attention, pool_frames(encoded.frames, frame_attention)
        grounded_video = self.video_head(pooled)  # (B, D)

        candidates = encoded.candidates  # (B, A, D)
        visual_weights = linguistic_weights = None
        if self.eci is not None and self.eci.visual is not None:
            visual = self.eci.visual(grounded_video, encoded.frames, batch.video_mask)
            grounded_video, visual_weights = visual.feature, visual.weights
        if self.eci is not None and self.eci.linguistic is not None:
            linguistic = self.eci.linguistic(candidates)
            candidates, linguistic_weights = linguistic.feature, linguistic.weights

        scale = self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
        video_unit = F.normalize(grounded_video, dim=-1)
        option_logits = scale * torch.einsum("bd,bad->ba", video_unit, F.normalize(candidates, dim=-1))
        question_logits = scale * video_unit @ F.normalize(encoded.question, dim=-1).T  # (B, B)

        # The diagonal is the target, except that a question asked twice in the batch (same text, so the
        # same pooled feature) cannot be told apart from its copy: its target is split evenly over them.
        same_question = (batch.question_pooled[:, None, :] == batch.question_pooled[None, :, :]).all(dim=-1)
        question_targets = same_question.float() / same_question.sum(dim=-1, keepdim=True)  # (B, B)

        chosen = batch.answer if batch.answer is not None else option_logits.argmax(dim=-1)
        qa_feature = candidates[torch.arange(B, device=candidates.device), chosen]  # (B, D)
        alignment_loss = None
        if self.cma is not None and batch.answer is not None:
            alignment_loss = self.cma(grounded_video, qa_feature)

        return CRAOutput(
            option_logits=option_logits,
            frame_weights=frame_weights,
            frame_attention=frame_attention,
            grounded_video=grounded_video,
            qa_feature=qa_feature,
            question_logits=question_logits,
            question_targets=question_targets,
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
