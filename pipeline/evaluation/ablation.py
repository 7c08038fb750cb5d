"""The study's tables: per-run metrics over seeds, and video-bootstrap intervals of the pooled predictions.

Shape notation: N questions of a split, T frames, S seeds, R rows (model variants) of a table.

A *run* is one trained-and-evaluated model: its `metrics.json` (what `evaluate` writes) and its
`per_question.parquet` (`per_question_table`: one row per evaluated question with the values whose
means are the headline metrics). A *row* is a variant run with several seeds. For each row and split:
- `mean` / `std` of each metric over the seeds (std with ddof 1; 0 with one seed);
- `ci95`: the 95 % interval by bootstrap over *videos* of the seeds' predictions pooled (a video's
  questions of every seed are drawn together), so it measures how much the test videos, not the seeds,
  move the number.
Grounding columns are the post-hoc rule's (the official NExT-GQA rule).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.synthetic.records import QuestionNuisances
from pipeline.evaluation.diagnostics import attention_mass, per_question_scores, video_bootstrap
from pipeline.training.batches import ground_truth_frames

# (column, label, where in metrics.json): the headline columns of every table, in order.
COLUMNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("acc_qa", "Acc@QA", ("acc_qa",)),
    ("acc_gqa", "Acc@GQA", ("posthoc", "acc_gqa")),
    ("miop", "mIoP", ("posthoc", "miop")),
    ("miou", "mIoU", ("posthoc", "miou")),
    ("iop@0.5", "IoP@0.5", ("posthoc", "iop@0.5")),
    ("iou@0.5", "IoU@0.5", ("posthoc", "iou@0.5")),
    ("attention_mass", "mass", ("attention_mass",)),
    ("shortcut_visual", "short.V", ("shortcut_share", "visual")),
    ("shortcut_language", "short.L", ("shortcut_share", "language")),
)
PER_QUESTION_COLUMNS = tuple(name for name, _, _ in COLUMNS)
SHARES = ("attention_mass", "shortcut_visual", "shortcut_language")  # printed with 2 decimals
SPLITS = ("test_iid", "test_ood")


def per_question_table(
    predictions: pa.Table,
    segments: Mapping[tuple[str, str, str], list[list[float]]],
    nuisances: Mapping[tuple[str, str, str], QuestionNuisances] | None = None,
) -> pa.Table:
    """One row per evaluated question: split, video_id, qid and the values behind each headline metric.

    `predictions` is `data/eval/predictions.parquet` (schema PREDICTIONS); `segments` and `nuisances` are
    keyed by (split, video_id, qid). Accuracies and overlaps are in percent (their mean is the metric);
    `shortcut_*` are 0/1 (the predicted option has the kind paired with the nuisance); NaN where the
    metric is undefined (no grounding label, no nuisance record).
    """
    rows = predictions.to_pydict()
    keys = list(zip(rows["split"], rows["video_id"], rows["qid"], strict=True))
    correct = np.array(rows["answer"]) == np.array(rows["prediction"])
    spans = np.array(rows["span_posthoc"], dtype=np.float64).reshape(len(keys), 2)
    question_segments = [segments.get(key, []) for key in keys]
    scores = per_question_scores(correct, spans, question_segments)
    timestamps = np.array(rows["timestamps"], dtype=np.float64)  # (N, T)
    weights = np.array(rows["frame_weights"], dtype=np.float64)  # (N, T)
    mass = attention_mass(weights, ground_truth_frames(timestamps, question_segments))
    shortcut = {"visual": np.full(len(keys), np.nan), "language": np.full(len(keys), np.nan)}
    for i, key in enumerate(keys):
        record = None if nuisances is None else nuisances.get(key)
        if record is not None:
            chosen = record.option_kinds[int(rows["prediction"][i])]
            shortcut["visual"][i] = float(chosen == record.visual_kind)
            shortcut["language"][i] = float(chosen == record.language_kind)
    columns = {
        "split": rows["split"],
        "video_id": rows["video_id"],
        "qid": rows["qid"],
        "acc_qa": 100.0 * correct,
        **{name: scores[name] for name in ("acc_gqa", "miop", "miou", "iop@0.5", "iou@0.5")},
        "attention_mass": mass,
        "shortcut_visual": shortcut["visual"],
        "shortcut_language": shortcut["language"],
    }
    return pa.table({k: (v if isinstance(v, list) else pa.array(v, pa.float64())) for k, v in columns.items()})


def _lookup(metrics: Mapping[str, Any], path: Sequence[str]) -> float:
    node: Any = metrics
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return math.nan
        node = node[key]
    return float(node) if node is not None else math.nan


def summarise_row(
    runs: Sequence[tuple[Mapping[str, Any], pa.Table]], resamples: int = 1000, seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """`{split: {column: {"mean", "std", "ci95": [low, high], "seeds": [...]}}}` of one row's runs."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for split in SPLITS:
        pooled = [table.filter(pa.compute.equal(table["split"], split)) for _, table in runs]
        pooled = [t for t in pooled if t.num_rows]
        if not pooled:
            continue
        table = pa.concat_tables(pooled)
        values = {name: table[name].to_numpy(zero_copy_only=False) for name in PER_QUESTION_COLUMNS}
        intervals = video_bootstrap(values, table["video_id"].to_pylist(), resamples=resamples, seed=seed)
        summary[split] = {}
        for name, _, path in COLUMNS:
            per_seed = [_lookup(metrics.get(split, {}), path) for metrics, _ in runs]
            finite = [v for v in per_seed if not math.isnan(v)]
            summary[split][name] = {
                "mean": float(np.mean(finite)) if finite else math.nan,
                "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else (0.0 if finite else math.nan),
                "ci95": [round(intervals[name][0], 4), round(intervals[name][1], 4)],
                "seeds": [round(v, 4) for v in per_seed],
            }
    return summary


def load_run(run_dir: Path) -> tuple[dict[str, Any], pa.Table]:
    """A run folder's (metrics.json, per_question.parquet)."""
    return json.loads((run_dir / "metrics.json").read_text()), pq.read_table(run_dir / "per_question.parquet")


def _cell(entry: Mapping[str, Any], digits: int) -> str:
    mean, std = entry["mean"], entry["std"]
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(rows: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str], split: str) -> list[str]:
    """Markdown lines of one split's table: a row per variant, mean ± std over seeds, then the pooled
    video-bootstrap interval of Acc@QA and Acc@GQA."""
    header = ["variant", "seeds", *(label for _, label, _ in COLUMNS), "Acc@QA 95% CI", "Acc@GQA 95% CI"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row_id, summary in rows.items():
        if split not in summary:
            continue
        cells = summary[split]
        values = [_cell(cells[name], 2 if name in SHARES else 1) for name, _, _ in COLUMNS]
        intervals = [
            "[{:.1f}, {:.1f}]".format(*cells[name]["ci95"]) if not math.isnan(cells[name]["ci95"][0]) else "-"
            for name in ("acc_qa", "acc_gqa")
        ]
        seeds = str(summary.get("n_seeds", "-"))
        lines.append("| " + " | ".join([labels.get(row_id, row_id), seeds, *values, *intervals]) + " |")
    return lines
