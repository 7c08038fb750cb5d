"""dvclive's metric history of a training run, read back: the curves' data and the kept epoch's summary.

dvclive writes one TSV per logged metric under `<log dir>/plots/metrics/` (`train/loss/qa.tsv`: columns
`step` and `qa`); step k is epoch k + 1. `val/selected` is 1 at each epoch that improved the selection
metric, so the last such step is the kept checkpoint.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

History = Mapping[str, tuple[np.ndarray, np.ndarray]]  # metric name -> (steps, values)


def read_history(log_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{"train/loss/qa": (steps, values), ...}` from `<log_dir>/plots/metrics/**/*.tsv`, sorted by name."""
    root = Path(log_dir) / "plots" / "metrics"
    history: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in sorted(root.rglob("*.tsv")):
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        value_column = path.stem  # dvclive names the value column after the metric's last component
        steps = np.array([int(row["step"]) for row in rows], dtype=np.int64)
        values = np.array([float(row[value_column]) for row in rows], dtype=np.float64)
        history[path.relative_to(root).with_suffix("").as_posix()] = (steps, values)
    return history


def selected_step(history: History) -> int | None:
    """The step (epoch - 1) of the kept checkpoint: the last one logged with `val/selected` = 1."""
    if "val/selected" not in history:
        return None
    steps, values = history["val/selected"]
    chosen = steps[values > 0.5]
    return int(chosen[-1]) if len(chosen) else None


def kept_epoch_summary(history: History, epoch: int) -> dict[str, Any]:
    """`{"best_epoch": epoch, "best_val": {"acc_qa": ..., "<rule>": {...}}}`: the validation metrics logged
    at the kept epoch (step epoch - 1), nested by their `/`-separated names, rounded to 4 decimals."""
    best_val: dict[str, Any] = {}
    for name, (steps, values) in history.items():
        if not name.startswith("val/") or name == "val/selected" or not (steps == epoch - 1).any():
            continue
        *groups, leaf = name.split("/")[1:]
        node = best_val
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = round(float(values[steps == epoch - 1][-1]), 4)
    return {"best_epoch": epoch, "best_val": best_val}
