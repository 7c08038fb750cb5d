"""Runtime helpers used by every stage: logging, seeding, device choice, progress bars, timing, temp files."""

from __future__ import annotations

import glob
import logging
import os
import random
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: it is slow to import
    import torch

T = TypeVar("T")

_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """A logger writing to stderr once per process (DVC shows stage stderr live)."""
    root = logging.getLogger("cra")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("CRA_LOG_LEVEL", "INFO"))
        root.propagate = False
    return logging.getLogger(f"cra.{name}")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def resolve_device(requested: str = "auto"):
    """`auto` -> CUDA when available, else CPU. Asking for `cuda` without one is an error."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device `cuda` was requested in params but torch sees no CUDA device; use `auto` or `cpu`")
    return torch.device(requested)


def autocast_dtype(device) -> torch.dtype | None:
    """Mixed precision for inference: bf16 where supported, else fp16, on CUDA; none on CPU."""
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A tqdm progress bar on stderr; quiet when CRA_NO_PROGRESS=1 (tests) or stderr is not a tty."""
    from tqdm import tqdm

    disable = os.environ.get("CRA_NO_PROGRESS") == "1"
    yield from tqdm(items, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True, mininterval=1.0)


@contextmanager
def timed(logger: logging.Logger, what: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    logger.info("%s took %.1f s", what, time.perf_counter() - start)


def temp_path(path: str | Path) -> Path:
    """Where an atomic write of `path` stages its content: `.<name>.tmp-<pid>` beside it.

    Stale ones (left by a killed run) are removed first (`remove_stale_temps`).
    """
    path = Path(path)
    remove_stale_temps(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the `.<name>.tmp-<pid>` files or folders beside `path` whose process is gone; return them.

    A stage killed mid-write (SIGKILL, a lost machine) leaves its staging file behind; DVC does not
    know it, so the next run of the stage that writes `path` removes it here, with a warning. One of a
    live process (a concurrent run) is left alone.
    """
    path = Path(path)
    removed = []
    for name in sorted(glob.glob(glob.escape(str(path.with_name(f".{path.name}.tmp-"))) + "*")):
        stale = Path(name)
        pid = stale.name.rsplit(".tmp-", 1)[-1]
        if not pid.isdigit() or (int(pid) != os.getpid() and _pid_alive(int(pid))):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    if removed:
        get_logger("runtime").warning(
            "removed %d temporary file(s) left by an interrupted run: %s", len(removed), ", ".join(map(str, removed))
        )
    return removed
