"""Resuming a killed `train` from its last complete epoch.

Where: `paths.train_resume` (default `.cra/resume/train/`, git-ignored). Not inside the stage's outs: DVC
deletes a stage's outs (`data/model`, `dvclive/`) before it runs the stage, so a state kept there would be
gone when `dvc repro` starts `train` again. (A `persist: true` out would survive, but DVC would then cache
the state with the checkpoint and never remove it.) `dvc exp run --temp` / `--queue` run in a copy of the
repository without git-ignored files: there a killed run starts again from epoch 1.

What: after every complete epoch, a folder `epoch-<k>/` with
  state.pt          the model, optimizer and LR-scheduler state dicts; every RNG the loop draws from: the
                    numpy Generator of stages/train.py (batch order and the VQ question choices), torch's
                    CPU generator (dropout) and, on CUDA, the device's, one per process under DDP; python's
                    `random`; the best-so-far selection value and checkpoint record; dvclive's step
  checkpoint/       the best-so-far checkpoint (`paths.checkpoint`, which DVC deletes before a re-run)
  live/             dvclive's files (`paths.train_log`) as they stood after the epoch
  fingerprint.json  what the state was made from (see `fingerprint`)
written as a temporary folder renamed into place; then `latest` (naming that folder) is replaced
atomically and older folders are removed, so a kill at any instant leaves one complete state.

On start, a state whose fingerprint equals the run's is loaded: the checkpoint and dvclive folders are
put back as they were after its epoch (dropping whatever the killed epoch wrote), and the loop continues
with the next epoch, so the run ends with the checkpoint and metrics of an uninterrupted one (tested
bit for bit on the CPU). A state made from other params, another number of processes or other input
artifacts, or one that cannot be read, is ignored with a warning (and replaced by the run's first save).
The folder is removed when training completes.

Under DDP every rank calls `load` and `save` (collective): rank 0 reads the state and sends it to the
others over the process group (no shared filesystem needed), every rank's torch RNG state is gathered
to rank 0, and only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.artifacts.parquet import read_metadata
from pipeline.config import Params, to_dict
from pipeline.distributed import RankContext
from pipeline.runtime import get_logger

log = get_logger("resume")

# The params `train` reads (its `params:` in dvc.yaml) that decide what it computes, less those it only
# checks against the feature artifacts' metadata: the artifacts' digests stand for those.
TRAIN_PARAMS = ("model", "gsg", "cma", "eci", "train", "eval.batch_size", "data.train_split", "data.val_split")
LATEST = "latest"
STATE_FILE = "state.pt"
FINGERPRINT_FILE = "fingerprint.json"
CHECKPOINT_DIR = "checkpoint"
LIVE_DIR = "live"


# ---------------------------------------------------------------------------------------------
# Fingerprint


def _param(params: Params, dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        value = getattr(value, part)
    return to_dict(value) if dataclasses.is_dataclass(value) else value


def input_files(params: Params) -> list[Path]:
    """The artifacts `train` reads: the QA table, the visual and text features, the confounder dictionaries."""
    files = []
    for path in map(Path, (params.paths.qa_table, params.paths.visual_features)):
        files.append(path)
    for folder in map(Path, (params.paths.text_features, params.paths.confounders)):
        if folder.is_dir():
            files += sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    return files


def artifact_digest(path: Path) -> str | None:
    """The artifact's metadata when it carries a `feature_checksum` (hashed, with the checksum of its
    feature columns), else the sha256 of its bytes; None when it does not exist."""
    if not path.is_file():
        return None
    try:
        meta = read_metadata(path)
    except Exception:  # noqa: BLE001 - not one of our Parquet artifacts: its bytes decide
        meta = {}
    digest = hashlib.sha256()
    if "feature_checksum" in meta:
        digest.update(json.dumps(meta, sort_keys=True).encode())
        return "meta:" + digest.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def fingerprint(params: Params, world_size: int) -> dict[str, Any]:
    """What a run's state depends on: the params `train` reads (`TRAIN_PARAMS`; of `train.launch` only the
    number of processes, not where they run), and a digest of each input artifact."""
    values = {key: _param(params, key) for key in TRAIN_PARAMS}
    values["train"].pop("launch", None)
    values["world_size"] = world_size
    return {"params": values, "inputs": {str(path): artifact_digest(path) for path in input_files(params)}}


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words (empty when they are equal)."""
    out = []
    for group, what in (("params", "params"), ("inputs", "input")):
        old, new = recorded.get(group, {}), current.get(group, {})
        changed = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
        out += [f"{what} `{key}`" for key in changed]
    return out


# ---------------------------------------------------------------------------------------------
# State


@dataclass
class SavedState:
    """A complete epoch's training state, as `Resume.load` returns it."""

    folder: Path
    epoch: int  # the last complete epoch: training continues with epoch + 1
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    generator: dict[str, Any]  # numpy bit-generator state of the loop's Generator
    torch_rng: list[torch.Tensor]  # torch's CPU generator state, per rank
    cuda_rng: list[torch.Tensor] | None  # the CUDA generator state of each rank's device (CUDA runs)
    python_rng: Any
    best_value: float
    best_state: dict[str, Any] | None  # the checkpoint record of the best epoch so far
    live_step: int  # dvclive's step for the next epoch

    def restore(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        generator: np.random.Generator,
        ctx: RankContext,
    ) -> None:
        """Load the model, optimizer, scheduler and every RNG as they were after `epoch` (this rank's)."""
        model.load_state_dict(self.model)
        optimizer.load_state_dict(self.optimizer)
        scheduler.load_state_dict(self.scheduler)
        generator.bit_generator.state = self.generator
        torch.set_rng_state(self.torch_rng[ctx.rank])
        if self.cuda_rng is not None and ctx.device.type == "cuda":
            torch.cuda.set_rng_state(self.cuda_rng[ctx.rank], ctx.device)
        random.setstate(self.python_rng)


def _mirror(source: Path, target: Path) -> None:
    """Make folder `target` a copy of `source` (removed when `source` does not exist)."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    if source.is_dir():
        shutil.copytree(source, target)


class Resume:
    """The resume state of one `train` run (see the module docstring). Under DDP every rank calls each method."""

    def __init__(self, params: Params, ctx: RankContext) -> None:
        self.folder = Path(params.paths.train_resume)
        self.checkpoint = Path(params.paths.checkpoint)
        self.live = Path(params.paths.train_log)
        self.ctx = ctx
        self.fingerprint = fingerprint(params, ctx.world_size) if ctx.is_main else None

    def load(self) -> SavedState | None:
        """The state of the last complete epoch of a killed run with this fingerprint, or None.

        On rank 0 the checkpoint and dvclive folders are put back as they were after that epoch.
        """
        state = self._read() if self.ctx.is_main else None
        state = self.ctx.broadcast(state)
        if state is not None and self.ctx.is_main:
            _mirror(state.folder / CHECKPOINT_DIR, self.checkpoint)
            _mirror(state.folder / LIVE_DIR, self.live)
            log.info("resuming from epoch %d of %s (%s)", state.epoch, self.folder, state.folder.name)
        return state

    def _read(self) -> SavedState | None:
        latest = self.folder / LATEST
        if not latest.is_file():
            return None
        folder = self.folder / latest.read_text().strip()
        try:
            recorded = json.loads((folder / FINGERPRINT_FILE).read_text())
            payload = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable state is only a lost shortcut
            log.warning("ignoring the resume state in %s: it cannot be read (%s); training starts afresh", folder, err)
            return None
        changed = differences(recorded, self.fingerprint)
        if changed:
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            log.warning(
                "ignoring the resume state in %s (epoch %s of a killed run): it was made with another %s; "
                "training starts afresh",
                folder,
                payload.get("epoch"),
                shown,
            )
            return None
        return SavedState(folder=folder, **payload)

    def save(
        self,
        epoch: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        generator: np.random.Generator,
        best_value: float,
        best_state: dict[str, Any] | None,
        live_step: int,
    ) -> None:
        """Record the state after the complete `epoch` (call it after the checkpoint and dvclive are written)."""
        torch_rng = self.ctx.all_gather(torch.get_rng_state())
        device = self.ctx.device
        cuda_rng = self.ctx.all_gather(torch.cuda.get_rng_state(device)) if device.type == "cuda" else None
        if not self.ctx.is_main:
            return
        payload = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.bit_generator.state,
            "torch_rng": torch_rng,
            "cuda_rng": cuda_rng,
            "python_rng": random.getstate(),
            "best_value": best_value,
            "best_state": best_state,
            "live_step": live_step,
        }
        name = f"epoch-{epoch}"
        tmp = self.folder / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(payload, tmp / STATE_FILE)
        (tmp / FINGERPRINT_FILE).write_text(json.dumps(self.fingerprint, indent=1, sort_keys=True) + "\n")
        for source, target in ((self.checkpoint, CHECKPOINT_DIR), (self.live, LIVE_DIR)):
            if source.is_dir():
                shutil.copytree(source, tmp / target)
        final = self.folder / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = self.folder / f".{LATEST}.tmp-{os.getpid()}"
        pointer.write_text(name + "\n")
        os.replace(pointer, self.folder / LATEST)
        for entry in self.folder.iterdir():  # older epochs, stale states, leftovers of killed saves
            if entry.name not in (name, LATEST):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def finish(self) -> None:
        """Training completed: remove the state."""
        if self.ctx.is_main and self.folder.exists():
            shutil.rmtree(self.folder)
