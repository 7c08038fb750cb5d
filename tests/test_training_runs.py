"""Whole `train` runs on the tiny preset: killed and resumed, and as two processes under torchrun (gloo).

The project is built as in tests/test_pipeline_dag.py (its helpers), up to the features; every run trains
5 epochs, with dropout so that the resumed runs need torch's RNG restored as well as the numpy Generator
(batch order, VQ question choices). The two-process comparison runs without dropout and with
`cma.weight=0`: dropout masks come from each process's own generator, and CMA's InfoNCE takes its negatives
from each process's slice of the batch (pipeline/training/distributed.py); without them one and two
processes differ only in the order of float sums, which is what the tolerance covers.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
import yaml
from safetensors.numpy import load

from tests.conftest import REPO_ROOT
from tests.test_pipeline_dag import DVC, GIT_IDENTITY, run, stage_env, stages_run, tiny_params, tiny_project

pytestmark = pytest.mark.slow

EPOCHS, KILL_AFTER = 5, 2
TRAIN = [sys.executable, "-m", "pipeline", "train"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    params = tiny_params(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    params["train"]["epochs"] = EPOCHS
    params["model"]["dropout"] = 0.1
    root = tiny_project(tmp_path_factory.mktemp("cra_train_runs"), params)
    run([DVC, "repro", "text_features", "confounders"], root)
    run(["git", *GIT_IDENTITY, "add", "-A"], root)
    run(["git", *GIT_IDENTITY, "commit", "-qm", "tiny features"], root)
    return root


def outputs(project: Path, evaluated: bool = True) -> dict[str, bytes]:
    """The bytes of what train (and evaluate) wrote: checkpoint, dvclive's files, the DVC metrics."""
    files = [project / "data/model/model.safetensors", project / "data/model/model.json"]
    files += sorted((project / "dvclive").rglob("*.json")) + sorted((project / "dvclive").rglob("*.tsv"))
    if evaluated:
        files.append(project / "metrics/eval.json")
    return {str(path.relative_to(project)): path.read_bytes() for path in files}


def resume_folder(project: Path) -> Path:
    return project / yaml.safe_load((project / "params.yaml").read_text())["paths"]["train_resume"]


@pytest.fixture(scope="module")
def uninterrupted(project: Path) -> dict[str, bytes]:
    run(TRAIN, project)
    run([sys.executable, "-m", "pipeline", "evaluate"], project)
    assert not resume_folder(project).exists()  # removed when training completes
    # Honest counts, end to end: every tiny video is usable, so every question of each split is scored.
    metrics = json.loads((project / "metrics/eval.json").read_text())
    for split in yaml.safe_load((project / "params.yaml").read_text())["data"]["eval_splits"]:
        counts = metrics[split]
        assert counts["n_total"] == counts["n_scored"] == counts["n"] > 0
        assert set(counts["dropped"]) <= {"no_grounding_labels"}
        assert f"questions: {counts['n_total']} in the split" in (project / f"data/eval/{split}/report.txt").read_text()
    return outputs(project)


def kill_training(launched: subprocess.Popen, project: Path, after_epoch: int) -> None:
    """SIGKILL the training process under `launched` (itself, or a descendant: `dvc repro`, torchrun) as soon as
    the resume state of `after_epoch` is written, that is in the first steps of the next epoch."""
    latest = resume_folder(project) / "latest"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if launched.poll() is not None:
            pytest.fail(f"the run ended before it could be killed:\n{launched.communicate()[0][-3000:]}")
        if latest.is_file() and latest.read_text().strip() == f"epoch-{after_epoch}":
            break
        time.sleep(0.005)
    else:
        pytest.fail("no epoch completed in time")
    process = psutil.Process(launched.pid)
    training = [p for p in [process, *process.children(recursive=True)] if "train" in p.cmdline()]
    ranks = [p for p in training if "RANK" in p.environ()]  # under torchrun: one of its processes
    assert training, "no training process found"
    os.kill((ranks or training)[-1].pid, signal.SIGKILL)


def start(args: list[str], project: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=project, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_a_dvc_repro_killed_mid_epoch_resumes_and_ends_as_an_uninterrupted_run(project, uninterrupted):
    launched = start([DVC, "repro"], project)
    kill_training(launched, project, KILL_AFTER)
    output = launched.communicate()[0]
    assert launched.returncode != 0 and "failed to reproduce 'train'" in output, output[-3000:]
    # DVC deletes the stage's outs before running it again: the state lives outside them.
    output = run([DVC, "repro"], project)
    assert f"resuming from epoch {KILL_AFTER}" in output, output[-3000:]
    assert stages_run(output) == {"train", "evaluate"}
    assert outputs(project) == uninterrupted  # checkpoint, dvclive's files, metrics/eval.json: the same bytes
    assert not resume_folder(project).exists()


def test_a_train_command_killed_mid_epoch_resumes_and_ends_as_an_uninterrupted_run(project, uninterrupted):
    launched = start(TRAIN, project)
    kill_training(launched, project, KILL_AFTER)
    launched.communicate()
    assert launched.returncode == -signal.SIGKILL
    output = run(TRAIN, project)
    assert f"resuming from epoch {KILL_AFTER}" in output and "epoch 1:" not in output, output[-3000:]
    resumed = outputs(project, evaluated=False)
    trained, reference = (load(files["data/model/model.safetensors"]) for files in (resumed, uninterrupted))
    assert all(np.array_equal(trained[name], reference[name]) for name in reference)
    assert resumed == {name: data for name, data in uninterrupted.items() if not name.startswith("metrics")}


def logged(files: dict[str, bytes]) -> dict[str, list[float]]:
    """`{metric: value per epoch}` of dvclive's plots (`val/acc_qa`, `train/loss/qa`, ...)."""
    prefix = "dvclive/plots/metrics/"
    return {
        name[len(prefix) : -len(".tsv")]: [
            float(row[1]) for row in csv.reader(data.decode().splitlines()[1:], delimiter="\t")
        ]
        for name, data in files.items()
        if name.startswith(prefix)
    }


SAME_OBJECTIVE = ["-S", "model.dropout=0.0", "-S", "cma.weight=0.0"]
TWO_PROCESSES = [*TRAIN, *SAME_OBJECTIVE, "-S", "train.launch.nproc_per_node=2"]


@pytest.fixture(scope="module")
def one_and_two_processes(project: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    run([*TRAIN, *SAME_OBJECTIVE], project)
    single = outputs(project, evaluated=False)
    output = run(TWO_PROCESSES, project)
    assert "under torchrun" in output and "2 process(es)" in output
    return single, outputs(project, evaluated=False)


def test_two_processes_match_one_within_the_tolerance(project, one_and_two_processes):
    single, distributed = one_and_two_processes
    one, two = logged(single), logged(distributed)
    assert set(one) == set(two) and all(len(v) == EPOCHS for v in two.values())  # rank 0 alone logged
    # Validation: within one question of the split per metric (a near-tie may flip one prediction).
    split = pq.read_table(project / "data/prepared/qa.parquet", columns=["split"]).column("split").to_pylist()
    one_question = 100.0 / split.count("val")
    val_differences = {
        name: float(np.max(np.abs(np.subtract(one[name], two[name]))))
        for name in one
        if name.startswith("val/") and name != "val/selected"
    }
    # What README "Multi-GPU and multi-node" quotes (run with -s to see it).
    print(f"\n2 vs 1 process, max |difference| over {EPOCHS} epochs (one val question = {one_question:.3f}):")
    print("\n".join(f"  {name}: {value:.6g}" for name, value in sorted(val_differences.items())))
    for name, value in val_differences.items():
        assert value <= one_question + 1e-9, name
    # Training losses (summed over the ranks): the order of float sums only.
    for name in ("train/loss/qa", "train/loss/question_discrimination", "train/loss/total"):
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, err_msg=name)
    # The weights, when both kept the same epoch: rounding, amplified by training (measured: 1e-5 after 4 epochs).
    epochs = [json.loads(files["data/model/model.json"])["epoch"] for files in (single, distributed)]
    if epochs[0] == epochs[1]:
        one_weights, two_weights = (load(files["data/model/model.safetensors"]) for files in (single, distributed))
        weight_difference = max(float(np.max(np.abs(two_weights[k] - one_weights[k]))) for k in one_weights)
        print(f"  weights of the kept epoch {epochs[0]}: {weight_difference:.3g}")
        assert weight_difference <= 1e-3


def test_a_two_process_run_killed_mid_epoch_resumes_and_ends_as_an_uninterrupted_one(project, one_and_two_processes):
    launched = start(TWO_PROCESSES, project)
    kill_training(launched, project, KILL_AFTER)  # one of the two; torchrun then stops the other
    output = launched.communicate()[0]
    assert launched.returncode != 0 and "under torchrun failed" in output, output[-3000:]
    output = run(TWO_PROCESSES, project)
    assert f"resuming from epoch {KILL_AFTER}" in output, output[-3000:]
    assert outputs(project, evaluated=False) == one_and_two_processes[1]


def test_a_killed_runs_state_is_ignored_with_a_warning_by_a_run_with_other_params(project, uninterrupted):
    launched = start(TRAIN, project)
    kill_training(launched, project, 1)
    launched.communicate()
    output = run([*TRAIN, "-S", "train.lr=0.002"], project)
    assert "ignoring the resume state" in output and "params `train`" in output, output[-3000:]
    assert "resuming" not in output and "epoch 1:" in output  # started afresh
    assert not resume_folder(project).exists()
