"""The train stage's optimiser and learning-rate schedule (the loop itself runs in test_pipeline_dag.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from stages.train import build_optimizer, warmup_cosine


def lr_sequence(warmup_steps: int, total_steps: int, steps: int, base_lr: float = 2.0) -> list[float]:
    """The learning rate each optimiser step uses, stepping the scheduler after it as the train stage does."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = warmup_cosine(optimizer, warmup_steps, total_steps)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_linear_warmup_then_cosine_decay_to_zero():
    rates = lr_sequence(warmup_steps=4, total_steps=12, steps=14)
    # Warm-up: (step + 1) / 4 of the base lr, reaching it at the last warm-up step.
    assert rates[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    # Cosine over the remaining 8 steps: 0.5 (1 + cos(pi k / 8)) of the base lr at step 4 + k.
    expected = [1.0 + math.cos(math.pi * k / 8) for k in range(9)]
    assert rates[4:13] == pytest.approx(expected)
    assert rates[8] == pytest.approx(1.0)  # halfway: half the base lr
    assert rates[12] == pytest.approx(0.0, abs=1e-12) and rates[13] == pytest.approx(0.0, abs=1e-12)  # stays at 0


def test_without_warmup_the_schedule_starts_at_the_base_lr():
    rates = lr_sequence(warmup_steps=0, total_steps=4, steps=5)
    assert rates == pytest.approx([2.0, 1.0 + math.cos(math.pi / 4), 1.0, 1.0 - math.cos(math.pi / 4), 0.0])


@pytest.mark.parametrize(
    "name, expected_class, decoupled",
    [("adam", torch.optim.Adam, False), ("adamw", torch.optim.AdamW, True)],
)
def test_optimizer_choice_amsgrad_and_no_decay_on_vectors(name, expected_class, decoupled):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    cfg = SimpleNamespace(optimizer=name, lr=1e-5, weight_decay=0.05, amsgrad=True)
    optimizer = build_optimizer(model, cfg)
    assert type(optimizer) is expected_class and optimizer.defaults["decoupled_weight_decay"] is decoupled
    decay, no_decay = optimizer.param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 4])] and decay["weight_decay"] == 0.05
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0  # biases and LayerNorm
    assert all(group["amsgrad"] and group["lr"] == 1e-5 for group in optimizer.param_groups)
