"""Test-wide settings: offline model hubs, quiet progress bars, few threads, shared data location.

The tests that read the real NExT-GQA annotations take the `nextgqa_dir` fixture: it is
`../shared/data/nextgqa` beside the repository (CI lays `shared/` there), or `$CRA_NEXTGQA_DIR`,
and those tests are skipped, with the reason, when its files are absent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

# Set before transformers / huggingface_hub are imported anywhere: a missing hub file otherwise
# costs ~46 s of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CRA_NO_PROGRESS", "1")
# As the feature stages do (pipeline.runtime.thread_invariant_cpu_math), before any matrix product: the
# sharded-extraction tests compare a process using 2 threads with processes using 1.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NEXTGQA_DIR = Path(os.environ.get("CRA_NEXTGQA_DIR") or REPO_ROOT.parent / "shared" / "data" / "nextgqa")
# The files the real-data tests read.
NEXTGQA_FILES = (
    "val.csv",
    "test.csv",
    "gsub_val.json",
    "gsub_test.json",
    "frame2time_val.json",
    "frame2time_test.json",
    "map_vid_vidorID.json",
)


@pytest.fixture(scope="session")
def nextgqa_dir() -> Path:
    """The real NExT-GQA annotation files; the test is skipped without them."""
    missing = [name for name in NEXTGQA_FILES if not (NEXTGQA_DIR / name).is_file()]
    if missing:
        pytest.skip(
            f"real NExT-GQA annotations not found: {NEXTGQA_DIR} lacks {', '.join(missing)} "
            "(put NExT-GQA's datasets/nextgqa in ../shared/data/nextgqa or set CRA_NEXTGQA_DIR)"
        )
    return NEXTGQA_DIR


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture
def cra_log(caplog):
    """caplog for the pipeline's `cra` loggers (they do not propagate to the root logger)."""
    logger = logging.getLogger("cra")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)
