"""Cross-Modal Alignment (CMA): bidirectional InfoNCE between the grounded video feature and the feature
of the true "<question> <answer>" pair, across the batch.

Shape notation: B batch, D width.

Each grounded video must pick out its own QA pair among the batch's QA pairs, and each QA pair its own
video, which ties the grounded segment to the question-answer semantics instead of to whatever
spuriously co-occurs with the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class CMAConfig:
    enabled: bool = True
    temperature: float = 0.07
    weight: float = 0.1

    def validate(self, key: str) -> None:
        if self.temperature <= 0:
            raise ValueError(f"params: `{key}.temperature` must be > 0, got {self.temperature}")
        if self.weight < 0:
            raise ValueError(f"params: `{key}.weight` must be >= 0, got {self.weight}")


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE over a batch of pairs (a_i, b_i): (B, D), (B, D) -> scalar.

    Features are L2-normalised; logits are cosine similarities / temperature; the loss is the mean of
    the a->b and b->a cross-entropies with the matching index (the diagonal) as the target.
    """
    B, D = a.shape
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.T / temperature  # (B, B)
    target = torch.arange(B, device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class CrossModalAlignment(nn.Module):
    """Linear projection heads into a shared alignment space, then `info_nce`.

    The heads (as in CLIP/SimCLR) let the contrastive geometry differ from the answer-scoring one while
    the gradient still shapes the grounded feature and the QA feature beneath them.
    """

    def __init__(self, config: CMAConfig, d_model: int) -> None:
        super().__init__()
        self.temperature = config.temperature
        self.video_head = nn.Linear(d_model, d_model)
        self.text_head = nn.Linear(d_model, d_model)

    def forward(self, grounded_video: Tensor, qa_feature: Tensor) -> Tensor:
        """grounded_video (B, D), qa_feature (B, D) of the true QA pair -> scalar alignment loss."""
        B, D = grounded_video.shape
        return info_nce(self.video_head(grounded_video), self.text_head(qa_feature), self.temperature)
