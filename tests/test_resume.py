"""The resume state of `train` (pipeline/training/resume.py): what it restores, and when it is ignored.

The end-to-end fault test (SIGKILL mid-epoch, then the same command or `dvc repro`) is in
tests/test_training_runs.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.config import Params
from pipeline.distributed import RankContext
from pipeline.training.resume import LATEST, TRAIN_PARAMS, Resume
from stages.train import build_optimizer, warmup_cosine
from tests.conftest import REPO_ROOT

CTX = RankContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def make_params(root: Path, **train) -> Params:
    """Default params with every path under `root`, the inputs present (any bytes)."""
    paths = dataclasses.replace(
        Params().paths,
        qa_table=str(root / "qa.parquet"),
        visual_features=str(root / "visual.parquet"),
        text_features=str(root / "text"),
        confounders=str(root / "confounders"),
        checkpoint=str(root / "model"),
        train_log=str(root / "dvclive"),
        train_resume=str(root / "resume"),
    )
    for name in ("qa.parquet", "visual.parquet", "text/question.parquet", "confounders/visual.parquet"):
        path = root / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(name.encode())
    return dataclasses.replace(Params(), paths=paths, train=dataclasses.replace(Params().train, **train))


class Run:
    """A model, its optimizer and schedule, and the loop's Generator, as stages/train.py builds them."""

    def __init__(self, params: Params, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
        self.optimizer = build_optimizer(self.model, params.train)
        self.scheduler = warmup_cosine(self.optimizer, 2, 10)
        self.rng = np.random.default_rng(params.train.seed)

    def epoch(self) -> list[float]:
        """A few steps that draw from every RNG: batch order (numpy), dropout (torch)."""
        draws = []
        for _ in range(3):
            order = self.rng.permutation(6)
            x = torch.arange(24.0).reshape(6, 4)[order]
            loss = self.model(x).square().mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            draws.append(float(loss.detach()))
        return draws

    def save(self, resume: Resume, epoch: int, best: float = 1.0) -> None:
        resume.save(epoch, self.model, self.optimizer, self.scheduler, self.rng, best, {"epoch": epoch}, epoch)


def write_outputs(params: Params, text: str) -> None:
    """What the checkpoint and dvclive folders hold at the end of an epoch."""
    for folder in (params.paths.checkpoint, params.paths.train_log):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "file.txt").write_text(text)


def test_a_resumed_run_continues_exactly_as_the_uninterrupted_one(tmp_path: Path):
    params = make_params(tmp_path)
    run = Run(params)
    run.epoch()
    write_outputs(params, "after epoch 1")
    run.save(Resume(params, CTX), epoch=1)
    expected = run.epoch()  # what epoch 2 computes without interruption
    expected_weights = {k: v.clone() for k, v in run.model.state_dict().items()}
    write_outputs(params, "half of epoch 2")  # the killed epoch's files

    fresh = Run(params, seed=123)  # another initialisation and RNG state, as a new process would have
    state = Resume(params, CTX).load()
    assert state is not None and state.epoch == 1 and state.best_state == {"epoch": 1} and state.live_step == 1
    state.restore(fresh.model, fresh.optimizer, fresh.scheduler, fresh.rng, CTX)
    assert fresh.epoch() == expected
    assert all(torch.equal(v, fresh.model.state_dict()[k]) for k, v in expected_weights.items())
    assert fresh.scheduler.last_epoch == run.scheduler.last_epoch
    # The checkpoint and dvclive folders are back as they were after epoch 1.
    for folder in (params.paths.checkpoint, params.paths.train_log):
        assert (Path(folder) / "file.txt").read_text() == "after epoch 1"


def test_only_the_last_complete_epoch_is_kept_and_finish_removes_it(tmp_path: Path):
    params = make_params(tmp_path)
    run, resume = Run(params), Resume(params, CTX)
    folder = Path(params.paths.train_resume)
    run.save(resume, epoch=1)
    (folder / ".epoch-2.tmp-99999").mkdir()  # a save killed half-way
    run.save(resume, epoch=2)
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-2", LATEST]
    assert Resume(params, CTX).load().epoch == 2
    resume.finish()
    assert not folder.exists()
    assert Resume(params, CTX).load() is None


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda p: dataclasses.replace(p, train=dataclasses.replace(p.train, lr=0.5)), "params `train`"),
        (lambda p: dataclasses.replace(p, gsg=dataclasses.replace(p.gsg, sigma_init=2.0)), "params `gsg`"),
        (lambda p: dataclasses.replace(p, eval=dataclasses.replace(p.eval, batch_size=7)), "`eval.batch_size`"),
    ],
)
def test_a_state_made_with_other_params_is_ignored_with_a_warning(tmp_path: Path, cra_log, change, named):
    params = make_params(tmp_path)
    Run(params).save(Resume(params, CTX), epoch=1)
    assert Resume(change(params), CTX).load() is None
    assert named in cra_log.text and "ignoring the resume state" in cra_log.text


def test_a_state_made_from_other_inputs_is_ignored_naming_the_artifact(tmp_path: Path, cra_log):
    params = make_params(tmp_path)
    Run(params).save(Resume(params, CTX), epoch=1)
    Path(params.paths.visual_features).write_bytes(b"features of other videos")
    assert Resume(params, CTX).load() is None
    assert f"input `{params.paths.visual_features}`" in cra_log.text


def test_where_the_processes_run_does_not_matter_but_how_many(tmp_path: Path):
    params = make_params(tmp_path)
    Run(params).save(Resume(params, CTX), epoch=1)
    moved = dataclasses.replace(
        params.train, launch=dataclasses.replace(params.train.launch, rdzv_endpoint="node0.cluster:29400")
    )
    assert Resume(dataclasses.replace(params, train=moved), CTX).load() is not None
    two = RankContext(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
    assert Resume(params, two)._read() is None


def test_an_unreadable_state_is_ignored_with_a_warning(tmp_path: Path, cra_log):
    params = make_params(tmp_path)
    Run(params).save(Resume(params, CTX), epoch=1)
    (Path(params.paths.train_resume) / "epoch-1" / "state.pt").write_bytes(b"truncated")
    assert Resume(params, CTX).load() is None
    assert "cannot be read" in cra_log.text


def test_the_fingerprint_covers_the_params_train_reads():
    # Every section of TRAIN_PARAMS is one that dvc.yaml lists for train (the others are feature params, which
    # the artifacts' digests stand for).
    listed = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["train"]["params"]
    assert set(TRAIN_PARAMS) <= set(listed)
    assert {"model", "gsg", "cma", "eci", "train"} <= set(TRAIN_PARAMS)
