"""Training objective of CRA: answer cross-entropy, question discrimination and cross-modal alignment.

Shape notation: B batch, A options.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from models.cra import CRAOutput


def compute_losses(
    output: CRAOutput,
    answer: Tensor,
    *,
    qa_weight: float,
    question_discrimination_weight: float,
    cma_weight: float,
) -> dict[str, Tensor]:
    """Named scalar losses and their weighted sum under "total".

    - "qa": cross-entropy of `option_logits` (B, A) against `answer` (B,);
    - "question_discrimination": the reference code's VQ loss: each grounded video must pick its own
      question among the batch's questions (`question_logits` (B, B), target = the diagonal, split evenly
      over exact copies of a question in the batch: `question_targets`);
    - "cma": the CMA InfoNCE (present only when the model has CMA; `output.alignment_loss`).
    """
    B, A = output.option_logits.shape
    if answer.shape != (B,):
        raise ValueError(f"answer must have shape ({B},), got {tuple(answer.shape)}")
    losses = {
        "qa": F.cross_entropy(output.option_logits, answer),
        "question_discrimination": F.cross_entropy(output.question_logits, output.question_targets),
    }
    total = qa_weight * losses["qa"] + question_discrimination_weight * losses["question_discrimination"]
    if output.alignment_loss is not None:
        losses["cma"] = output.alignment_loss
        total = total + cma_weight * losses["cma"]
    losses["total"] = total
    return losses
