"""Checkpoints: tensors in safetensors, everything else (config, epoch, metrics, provenance) in JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.cra import CRA, CRAConfig
from pipeline.errors import PipelineError

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "model.json"


def save_checkpoint(folder: str | Path, model: CRA, state: dict[str, Any]) -> None:
    """Write `model.safetensors` (state_dict incl. the dictionary buffers) and `model.json` atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in model.state_dict().items()}
    tmp = folder / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / WEIGHTS_FILE)
    payload = {"config": model.config.to_dict(), **state}
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, folder / STATE_FILE)


def load_checkpoint(folder: str | Path, device: torch.device | str = "cpu") -> tuple[CRA, dict[str, Any]]:
    """Rebuild the model from `model.json` and load its tensors; returns (model in eval mode, JSON state)."""
    folder = Path(folder)
    weights, state_path = folder / WEIGHTS_FILE, folder / STATE_FILE
    if not weights.exists() or not state_path.exists():
        raise PipelineError(
            f"no checkpoint in {folder} (expected {WEIGHTS_FILE} and {STATE_FILE}): run the train stage"
        )
    state = json.loads(state_path.read_text())
    model = CRA(CRAConfig.from_dict(state["config"]))
    missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    if missing or unexpected:
        raise PipelineError(
            f"{weights} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]}): "
            "re-run the train stage"
        )
    return model.to(device).eval(), state
