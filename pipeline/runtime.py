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
        rank = _launcher_rank()
        log_format = _LOG_FORMAT if rank is None else _LOG_FORMAT.replace("%(name)s", f"[rank {rank}] %(name)s")
        handler.setFormatter(logging.Formatter(log_format, datefmt="%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("CRA_LOG_LEVEL", "INFO"))
        root.propagate = False
    return logging.getLogger(f"cra.{name}")


def _launcher_rank() -> int | None:
    """This process's rank when torchrun (or a similar launcher) runs several; None otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ:
        return int(os.environ["RANK"])
    return None


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


def thread_invariant_cpu_math() -> None:
    """Ask MKL (torch's CPU matrix products) for its strict reproducibility mode, unless MKL_CBWR is set.

    `MKL_CBWR=AUTO,STRICT`: the best code path for the CPU, with results that do not depend on the
    number of threads, so one process using every core and N processes sharing them compute the same
    bits (without it, MiniLM's features changed in the last bits between 1 and 2 threads; no cost
    measurable on our 2-core benchmarks). MKL reads it at its first call: call this before any matmul.
    """
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def resolve_device(requested: str = "auto", local_rank: int | None = None):
    """`auto` -> CUDA when available, else CPU. Asking for `cuda` without one is an error.

    With `local_rank` (a process of a multi-process run), CUDA means the GPU `cuda:<local_rank>`, made
    the current device; a machine with fewer GPUs than processes is an error.
    """
    import torch

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device `cuda` was requested in params but torch sees no CUDA device; use `auto` or `cpu`")
    if requested != "cuda" or local_rank is None:
        return torch.device(requested)
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise RuntimeError(
            f"process {local_rank} of this machine has no GPU of its own: torch sees {count} CUDA device(s); run at "
            "most one process per GPU"
        )
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def autocast_dtype(device) -> torch.dtype | None:
    """Mixed precision for inference: bf16 where supported, else fp16, on CUDA; none on CPU."""
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A tqdm progress bar on stderr; quiet when CRA_NO_PROGRESS=1 (tests), in processes other than rank 0
    of a multi-process run, or when stderr is not a tty."""
    from tqdm import tqdm

    disable = os.environ.get("CRA_NO_PROGRESS") == "1" or (_launcher_rank() or 0) > 0
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
