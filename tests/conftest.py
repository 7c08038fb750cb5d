"""Test-wide settings: offline model hubs, quiet progress bars, few threads, shared data location."""

from __future__ import annotations

import os
from pathlib import Path

# Set before transformers / huggingface_hub are imported anywhere: a missing hub file otherwise
# costs ~46 s of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CRA_NO_PROGRESS", "1")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NEXTGQA_DIR = REPO_ROOT.parent / "shared" / "data" / "nextgqa"


@pytest.fixture(scope="session")
def nextgqa_dir() -> Path:
    """The real NExT-GQA annotation files (../shared/data/nextgqa beside the repository)."""
    if not (NEXTGQA_DIR / "val.csv").exists():
        pytest.fail(f"real NExT-GQA annotations not found at {NEXTGQA_DIR} (CI lays shared/ beside the clone)")
    return NEXTGQA_DIR


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    import torch

    torch.set_num_threads(2)
