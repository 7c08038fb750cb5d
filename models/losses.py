"""Training objective of CRA: answer cross-entropy, question discrimination (VQ), cross-modal alignment, and
optional grounding supervision.

Shape notation: B batch, A options, C question choices, T frames.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from models.cra import CRABatch, CRAOutput


def grounding_supervision_loss(weights: Tensor, frame_labels: Tensor, rows: Tensor) -> Tensor:
    """Cross-entropy of the frame weights against the uniform distribution over ground-truth frames.

    weights (B, T) rows summing to 1, frame_labels (B, T) in {0, 1}, rows (B,) bool: which rows count.
    Rows without a labelled frame are skipped; 0 when none counts (so the term can always be added).
    """
    counted = rows & (frame_labels.sum(dim=-1) > 0)
    if not counted.any():
        return weights.sum() * 0.0
    target = frame_labels[counted] / frame_labels[counted].sum(dim=-1, keepdim=True)
    return -(target * weights[counted].clamp_min(1e-12).log()).sum(dim=-1).mean()


def compute_losses(
    output: CRAOutput,
    batch: CRABatch,
    *,
    qa_weight: float,
    question_discrimination_weight: float,
    cma_weight: float,
    grounding_weight: float = 0.0,
) -> dict[str, Tensor]:
    """Named scalar losses and their weighted sum under "total".

    - "qa": cross-entropy of `option_logits` (B, A) against `batch.answer` (B,);
    - "question_discrimination": the official VQ loss: the video grounded on the true question must pick
      it among the C question choices (`question_logits` (B, C), target: choice 0);
    - "cma": the CMA InfoNCE (present only when the model has CMA);
    - "grounding": `grounding_supervision_loss` on the rows `batch.supervise_grounding` marks (present only
      when `grounding_weight` > 0 and the batch carries frame labels).
    """
    if batch.answer is None:
        raise ValueError("compute_losses needs a batch with `answer`")
    B, A = output.option_logits.shape
    losses = {"qa": F.cross_entropy(output.option_logits, batch.answer)}
    total = qa_weight * losses["qa"]
    if output.question_logits is not None:
        target = torch.zeros(B, dtype=torch.long, device=output.question_logits.device)
        losses["question_discrimination"] = F.cross_entropy(output.question_logits, target)
        total = total + question_discrimination_weight * losses["question_discrimination"]
    if output.alignment_loss is not None:
        losses["cma"] = output.alignment_loss
        total = total + cma_weight * losses["cma"]
    if grounding_weight > 0 and batch.frame_labels is not None and batch.supervise_grounding is not None:
        losses["grounding"] = grounding_supervision_loss(
            output.frame_weights, batch.frame_labels, batch.supervise_grounding
        )
        total = total + grounding_weight * losses["grounding"]
    losses["total"] = total
    return losses
