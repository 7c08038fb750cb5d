"""Running a stage as several processes: PyTorch's own launcher (`torchrun`) and `torch.distributed`.

A stage reads its launch from params (`features.launch`, a `LaunchConfig`). With one process in all
nothing starts: `rank_context` yields a context of world size 1 and no process group. With more:
  - `relaunch` re-executes the stage command (`python -m pipeline <stage>`, with this process's own
    interpreter: the `python` that dvc.yaml's command found on PATH) under torchrun (`python -m
    torch.distributed.run`: `--standalone` on one machine, a static rendezvous at `rdzv_endpoint` with
    `--node-rank` on several), the params written to a temporary file, and returns when every process
    is done; a failed process fails the stage;
  - each process then finds itself inside a launcher (`RANK`, `WORLD_SIZE`, `LOCAL_RANK` set by
    torchrun, or by a cluster's own launcher, which a stage simply joins), and `rank_context` joins
    the process group: nccl on CUDA, gloo on CPU, plus a gloo group for what travels between the
    processes here (small Python objects, and part files for a rank 0 that cannot see another
    machine's disk: `fetch_to_main`).

`balanced_ranges` cuts weighted work units into contiguous shards of nearly equal weight.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import LaunchConfig, Params, to_dict
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger, resolve_device, thread_invariant_cpu_math

log = get_logger("distributed")

# Ranks wait at a barrier for the slowest shard: hours on a large dataset, not torch's default 30 min.
WAIT_TIMEOUT = timedelta(hours=24)
_LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def in_launcher() -> bool:
    """Whether this process was started by torchrun (or another launcher setting the same variables)."""
    return all(name in os.environ for name in _LAUNCHER_ENV)


def needs_relaunch(launch: LaunchConfig) -> bool:
    """Params ask for several processes, and this one is not one of them yet."""
    return launch.world_size > 1 and not in_launcher()


# ---------------------------------------------------------------------------------------------
# Launch


def torchrun_command(python: str, launch: LaunchConfig, module_args: Sequence[str]) -> list[str]:
    """The torchrun command line that runs `python -m <module_args>` as this machine's processes."""
    command = [python, "-m", "torch.distributed.run", f"--nproc-per-node={launch.nproc_per_node}"]
    if launch.nnodes == 1:
        command.append("--standalone")  # rendezvous on this machine, at a free port
    else:
        host, port = launch.host_port
        command += [
            f"--nnodes={launch.nnodes}",
            f"--node-rank={launch.node_rank}",
            f"--master-addr={host}",
            f"--master-port={port}",
        ]
    return [*command, "-m", *module_args]


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def relaunch(stage_command: str, params: Params, launch: LaunchConfig, failure_hint: str = "") -> None:
    """Run `<this interpreter> -m pipeline <stage_command>` under torchrun with `params`; return when all are done."""
    # sys.executable, not resolved: a venv's python is a symlink, and its own path is what selects the venv.
    python = sys.executable
    env = dict(os.environ)
    # torchrun would give every process 1 thread; CPU processes share this machine's cores instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, _cpu_count() // launch.nproc_per_node)))
    with tempfile.TemporaryDirectory(prefix="cra-launch-") as tmp:
        params_file = Path(tmp) / "params.yaml"
        params_file.write_text(yaml.safe_dump(to_dict(params), sort_keys=False))
        command = torchrun_command(python, launch, ["pipeline", stage_command, "--params", str(params_file)])
        log.info(
            "%s: %d process(es) on this machine (node %d of %d; %d in all) under torchrun",
            stage_command,
            launch.nproc_per_node,
            launch.node_rank,
            launch.nnodes,
            launch.world_size,
        )
        done = subprocess.run(command, env=env, check=False)
    if done.returncode != 0:
        raise PipelineError(
            f"`{stage_command}` under torchrun failed (exit status {done.returncode}); the failing process's error "
            f"is above. {failure_hint}".strip()
        )


# ---------------------------------------------------------------------------------------------
# Inside the processes


@dataclass
class RankContext:
    """This process's place in a run of `world_size` processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: Any  # torch.device
    group: Any = None  # the gloo process group for objects and files; None with one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.group is not None:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order (picklable values)."""
        if self.group is None:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value, group=self.group)
        return values

    def broadcast(self, value: Any, src: int = 0) -> Any:
        """Rank `src`'s `value`, on every rank."""
        if self.group is None:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=src, group=self.group)
        return box[0]

    def require_same(self, value: Any, what: str) -> None:
        """Refuse to go on, on every rank, unless all ranks hold the same `value`."""
        values = self.all_gather(value)
        if any(v != values[0] for v in values):
            listed = ", ".join(f"rank {rank}: {v}" for rank, v in enumerate(values))
            raise PipelineError(f"the {self.world_size} processes disagree on {what} ({listed})")


@contextmanager
def rank_context(device: str, device_param: str = "features.device") -> Iterator[RankContext]:
    """This process's `RankContext`; inside a launcher, the process group is joined here and left on exit.

    `device` is the params value (auto | cpu | cuda); on CUDA each process takes the GPU of its local rank.
    CPU matrix products are made independent of the thread count first (`thread_invariant_cpu_math`):
    one process and N processes with a share of the cores each then compute the same features.
    """
    import torch.distributed as dist

    thread_invariant_cpu_math()

    world_size = int(os.environ["WORLD_SIZE"]) if in_launcher() else 1
    rank = int(os.environ.get("RANK", 0)) if world_size > 1 else 0
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if world_size > 1 else 0
    try:
        resolved = resolve_device(device, local_rank if world_size > 1 else None)
    except RuntimeError as err:
        raise PipelineError(f"{device_param}: {err}") from None
    if world_size == 1:
        yield RankContext(0, 1, 0, resolved)
        return
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    options = {"device_id": resolved} if backend == "nccl" else {}
    dist.init_process_group(backend, timeout=WAIT_TIMEOUT, **options)
    try:
        group = dist.group.WORLD if backend == "gloo" else dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)
        yield RankContext(rank, world_size, local_rank, resolved, group)
    finally:
        dist.destroy_process_group()


def fetch_to_main(ctx: RankContext, files_of_rank: Sequence[Sequence[Path]], wanted: Sequence[int] | None) -> None:
    """Copy to rank 0 the files of the ranks in `wanted` (a list on rank 0, ignored elsewhere).

    Each wanted rank sends its `files_of_rank[rank]` over the gloo group and rank 0 writes them at the
    same paths (atomically): parts written on another machine's disk reach the merge without a shared
    filesystem. A file its rank does not have stays missing on rank 0. Collective: every rank calls it.
    """
    if ctx.group is None:
        return
    import torch
    import torch.distributed as dist

    wanted = ctx.broadcast(list(wanted or []) if ctx.is_main else None)
    for source in wanted:
        if source == 0:
            continue
        for path in files_of_rank[source]:
            size = torch.zeros(1, dtype=torch.int64)
            if ctx.rank == source:
                data = Path(path).read_bytes() if Path(path).is_file() else b""
                size[0] = len(data) if data else -1
                dist.send(size, dst=0, group=ctx.group)
                if data:
                    dist.send(torch.frombuffer(bytearray(data), dtype=torch.uint8), dst=0, group=ctx.group)
            elif ctx.is_main:
                dist.recv(size, src=source, group=ctx.group)
                if int(size) > 0:
                    buffer = torch.empty(int(size), dtype=torch.uint8)
                    dist.recv(buffer, src=source, group=ctx.group)
                    _write_atomically(Path(path), buffer.numpy())
    ctx.barrier()


def _write_atomically(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(memoryview(data))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Sharding


def balanced_ranges(weights: Sequence[int], count: int) -> list[range]:
    """Cut units 0..n-1, of integer `weights`, into `count` contiguous ranges of nearly equal weight.

    Boundary r sits where the running total is closest to r/count of the whole (ties: the earlier unit),
    so each range is within about one unit's weight of total/count. Ranges may be empty (more ranges
    than units). Deterministic: integer arithmetic only.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    prefix = [0]
    for weight in weights:
        if weight < 0:
            raise ValueError(f"weights must be >= 0, got {weight}")
        prefix.append(prefix[-1] + int(weight))
    total, n = prefix[-1], len(weights)
    bounds = [0]
    for r in range(1, count):
        # The first i with prefix[i] * count >= total * r, or the one before it when that is as close.
        i = next((j for j in range(bounds[-1], n + 1) if prefix[j] * count >= total * r), n)
        if i > bounds[-1] and total * r - prefix[i - 1] * count <= prefix[i] * count - total * r:
            i -= 1
        bounds.append(i)
    bounds.append(n)
    return [range(bounds[r], bounds[r + 1]) for r in range(count)]
