"""The on-demand benchmarks start and run their code paths (their figures are not checked: speed
targets live in the benchmarks, not in the tests)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT


def run_module(*args: str) -> str:
    env = {**os.environ, "CRA_NO_PROGRESS": "1", "CRA_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the benchmark would run")
def test_gpu_benchmark_without_a_gpu_says_so_and_exits_cleanly():
    output = run_module("benchmarks.gpu")
    assert "No CUDA device visible to torch" in output and "the GPU benchmark was not run" in output


@pytest.mark.slow
def test_gpu_benchmark_code_paths_run_on_the_cpu():
    output = run_module("benchmarks.gpu", "--smoke")
    assert "encoder only (pre-decoded tensors)" in output and "ratio whole / encoder" in output
    assert "float32" in output and "steps/s" in output and "questions/s" in output
