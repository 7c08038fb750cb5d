"""How DDP training cuts a global batch (pipeline/training/distributed.py), without starting processes.

Whole 1- and 2-process runs under torchrun are compared in tests/test_training_runs.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.distributed import RankContext
from pipeline.training.batches import TrainingInputs
from pipeline.training.distributed import local_batch, loss_scale
from tests.test_batches import questions


def contexts(world_size: int) -> list[RankContext]:
    return [RankContext(rank, world_size, rank, torch.device("cpu")) for rank in range(world_size)]


@pytest.mark.parametrize("global_size, world_size", [(8, 2), (7, 2), (8, 3), (5, 4)])
def test_the_rank_slices_partition_the_global_batch_in_order(global_size: int, world_size: int):
    index = np.random.default_rng(0).permutation(100)[:global_size]
    choices = np.arange(global_size * 3).reshape(global_size, 3)
    inputs = TrainingInputs(choices, np.arange(global_size) % 2 == 0)
    slices = [local_batch(index, inputs, ctx) for ctx in contexts(world_size)]
    np.testing.assert_array_equal(np.concatenate([rows for rows, _ in slices]), index)
    np.testing.assert_array_equal(np.concatenate([part.question_choices for _, part in slices]), choices)
    np.testing.assert_array_equal(
        np.concatenate([part.supervise_grounding for _, part in slices]), inputs.supervise_grounding
    )
    sizes = [len(rows) for rows, _ in slices]
    assert max(sizes) - min(sizes) <= 1  # global / world_size each


def test_a_batch_smaller_than_the_world_is_skipped_on_every_rank():
    inputs = TrainingInputs(np.zeros((1, 3), dtype=np.int64))
    assert all(local_batch(np.array([4]), inputs, ctx) is None for ctx in contexts(2))
    one = contexts(1)[0]
    assert local_batch(np.array([4]), inputs, one)[0].tolist() == [4]  # one process trains on it


@pytest.mark.parametrize("global_size, world_size", [(8, 2), (7, 2), (7, 3)])
def test_scaled_rank_means_average_to_the_global_batch_mean(global_size: int, world_size: int):
    # DDP averages the ranks' gradients; with the scale, that average is the global mean loss's gradient.
    losses = np.random.default_rng(1).random(global_size)
    parts = np.array_split(losses, world_size)
    averaged = np.mean(
        [
            part.mean() * loss_scale(len(part), global_size, ctx)
            for part, ctx in zip(parts, contexts(world_size), strict=True)
        ]
    )
    assert averaged == pytest.approx(losses.mean(), rel=1e-12)
    assert loss_scale(5, 8, contexts(1)[0]) == 1.0


def test_a_subset_keeps_the_rows_in_the_order_asked():
    split = questions(["a", "b", "c", "d"], [0, 1, 2, 3])
    part = split.subset(np.array([2, 0]))
    assert part.video_ids == ["c", "a"] and part.question_rows.tolist() == [2, 0] and len(part) == 2
    assert part.dropped == {}
