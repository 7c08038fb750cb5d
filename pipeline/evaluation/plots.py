"""The pictures: PNG files that open offline (DVC image plots, `cra show`), drawn with matplotlib's Agg renderer.

- `training_curves`: per epoch, the training losses, the validation metrics (the kept epoch marked), the
  learning rate and GSG's sigma, from dvclive's metric history (`pipeline.training.history`); written by
  `train`.
- `grounding_histograms`: per evaluation split, the distribution of each question's max IoU and max IoP
  under each grounding rule (0.3 and 0.5 marked); written by `evaluate`.
- `question_figure`: one question of the last evaluation: the frame weights before and after the Gaussian
  smoothing, the ground-truth segments shaded, the three rules' spans, and the question, options, answer
  and prediction in the title (`cra show`).

Figures are `matplotlib.figure.Figure` objects saved directly: no pyplot state and no display, so they
draw the same in a stage, a test or a headless server.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import read_table
from pipeline.artifacts.schemas import official_key
from pipeline.errors import PipelineError
from pipeline.evaluation.scoring import best_overlap
from pipeline.training.history import selected_step

# File names under `paths.plots`, declared as DVC plots in dvc.yaml (tests/test_plots.py checks both agree).
TRAINING_CURVES = "training_curves.png"
GROUNDING_HISTOGRAMS = "grounding_histograms.png"

RULE_COLOURS = {"prehoc": "tab:orange", "posthoc": "tab:green", "merged": "tab:purple"}
DPI = 110


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import

    return Figure(figsize=(width, height))


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


# ---------------------------------------------------------------------------------------------
# Training curves


def training_curves(history: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """One panel each: training losses, validation metrics, learning rate, GSG sigma (when logged); x = epoch."""
    from matplotlib.ticker import MaxNLocator

    panels = [
        ("training losses", [name for name in history if name.startswith("train/loss/")]),
        ("validation (percent)", [name for name in history if name.startswith("val/") and name != "val/selected"]),
        ("learning rate", [name for name in history if name == "train/lr"]),
        ("GSG sigma (frames)", [name for name in history if name == "train/gsg_sigma"]),
    ]
    panels = [(title, names) for title, names in panels if names]
    kept = selected_step(history)
    columns = min(2, max(1, len(panels)))
    rows = max(1, -(-len(panels) // columns))
    fig = _figure(5.0 * columns, 3.2 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[max(1, len(panels)) :]:
        ax.set_visible(False)  # the empty fourth panel of three
    for ax, (title, names) in zip(axes, panels, strict=False):
        for name in names:
            steps, values = history[name]
            ax.plot(steps + 1, values, "-o", ms=2.5, lw=1.2, label=name.split("/", 1)[1])
        if kept is not None:
            ax.axvline(kept + 1, color="grey", ls="--", lw=0.8, label=f"kept (epoch {kept + 1})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)  # sigma moves by 1e-4 around 2: "+2" above the axis misleads
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
    if not panels:
        axes[0].text(0.5, 0.5, "no metrics logged", ha="center", va="center", transform=axes[0].transAxes)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Grounding histograms


def question_overlaps(
    spans: np.ndarray, segments: Sequence[Sequence[Sequence[float]]]
) -> tuple[np.ndarray, np.ndarray]:
    """(max IoU, max IoP) per labelled question, as the official scoring; questions without segments are left out."""
    pairs = [best_overlap(span, question) for span, question in zip(spans, segments, strict=True) if question]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    ious, iops = zip(*pairs, strict=True)
    return np.asarray(ious), np.asarray(iops)


def grounding_histograms(
    splits: Mapping[str, tuple[Mapping[str, np.ndarray], Sequence[Sequence[Sequence[float]]]]], path: str | Path
) -> Path:
    """Rows: splits; columns: max IoU, max IoP. `splits` maps a split to (`{rule: (N, 2) spans}`, N segment lists)."""
    names = list(splits) or ["(no split)"]
    fig = _figure(9.0, 2.4 * len(names))
    axes = fig.subplots(len(names), 2, squeeze=False)
    bins = np.linspace(0.0, 1.0, 11)
    for row, split in enumerate(names):
        spans_by_rule, segments = splits.get(split, ({}, []))
        for column, measure in enumerate(("IoU", "IoP")):
            ax = axes[row, column]
            rules = list(spans_by_rule)
            values = [question_overlaps(spans_by_rule[rule], segments)[column] for rule in rules]
            labelled = len(values[0]) if values else 0
            if labelled:  # the rules' bars side by side in each bin, so that equal counts do not hide each other
                colours = [RULE_COLOURS.get(rule, "grey") for rule in rules]
                ax.hist(values, bins=bins, histtype="bar", color=colours, label=rules)
            for threshold in (0.3, 0.5):
                ax.axvline(threshold, color="grey", ls=":", lw=0.8)
            if not labelled:
                ax.text(0.5, 0.5, "no grounding labels", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{split}: max {measure} per question ({labelled} labelled)", fontsize=9)
            ax.set_xlim(0.0, 1.0)
            ax.set_ylabel("questions", fontsize=8)
            ax.tick_params(labelsize=7)
            if labelled:
                ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("overlap with the ground truth (dotted: 0.3, 0.5)", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# One question (`cra show`)


@dataclass(frozen=True)
class ShownQuestion:
    """Everything `question_figure` draws, from one row of predictions.parquet and its row of the QA table."""

    key: str  # "<video_id>_<qid>"
    split: str
    qtype: str
    question: str
    options: list[str]
    answer: int
    prediction: int
    timestamps: np.ndarray  # (T,) seconds
    weights: np.ndarray  # (T,) after the Gaussian smoothing (the weights that pooled the frames)
    attention: np.ndarray  # (T,) before it (equal to `weights` without GSG)
    segments: list[list[float]]  # ground truth [start_s, end_s]; may be empty
    spans: dict[str, list[float]]  # rule -> [start_s, end_s]
    duration: float | None  # seconds, from the annotation when given


def find_question(predictions_path: str | Path, qa_path: str | Path, key: str, split: str | None) -> ShownQuestion:
    """The question `key` ("<video_id>_<qid>", or a qid alone when it names one question) of the last evaluation,
    from `predictions.parquet` (weights, spans, prediction) and the QA table (text, options, ground truth)."""
    predictions = read_table(predictions_path, schemas.PREDICTIONS)
    columns = predictions.select(["split", "video_id", "qid"]).to_pydict()
    keys = [official_key(video_id, qid) for video_id, qid in zip(columns["video_id"], columns["qid"], strict=True)]
    rows = [
        i
        for i, (full_key, qid, row_split) in enumerate(zip(keys, columns["qid"], columns["split"], strict=True))
        if key in (full_key, qid) and split in (None, row_split)
    ]
    where = f" in split {split!r}" if split else ""
    if not rows:
        raise PipelineError(
            f"no question {key!r}{where} in {predictions_path} (splits there: {sorted(set(columns['split']))}; "
            f"keys look like '<video_id>_<qid>', e.g. {', '.join(keys[:3])})"
        )
    if len(rows) > 1:
        found = ", ".join(f"{columns['split'][i]} {keys[i]}" for i in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise PipelineError(
            f"{key!r}{where} names {len(rows)} questions ({found}): give the full '<video_id>_<qid>' key, or --split"
        )
    row = predictions.slice(rows[0], 1).to_pylist()[0]
    qa = read_table(qa_path, schemas.QA).to_pydict()
    matches = [
        i
        for i, (s, v, q) in enumerate(zip(qa["split"], qa["video_id"], qa["qid"], strict=True))
        if (s, v, q) == (row["split"], row["video_id"], row["qid"])
    ]
    if not matches:
        raise PipelineError(
            f"{official_key(row['video_id'], row['qid'])} ({row['split']}) is in {predictions_path} but not in "
            f"{qa_path}: the predictions are from another QA table; re-run evaluate (`dvc repro`)"
        )
    question = {name: values[matches[0]] for name, values in qa.items()}
    return ShownQuestion(
        key=official_key(row["video_id"], row["qid"]),
        split=row["split"],
        qtype=row["type"],
        question=question["question"],
        options=question["options"],
        answer=row["answer"],
        prediction=row["prediction"],
        timestamps=np.asarray(row["timestamps"]),
        weights=np.asarray(row["frame_weights"]),
        attention=np.asarray(row["frame_attention"]),
        segments=question["segments"],
        spans={rule: list(row[f"span_{rule}"]) for rule in RULE_COLOURS},
        duration=question["duration"],
    )


def _title(shown: ShownQuestion) -> str:
    verdict = "right" if shown.prediction == shown.answer else "wrong"
    lines = [f"{shown.split} {shown.key} ({shown.qtype}): {shown.question}"]
    for index, option in enumerate(shown.options):
        marks = [name for name, mine in (("answer", shown.answer), ("predicted", shown.prediction)) if mine == index]
        lines.append(f"{index}. {option}" + (f"  <- {', '.join(marks)}" if marks else ""))
    lines.append(f"prediction {shown.prediction} ({verdict})")
    return "\n".join(textwrap.shorten(line, 110) for line in lines)


def question_figure(shown: ShownQuestion, path: str | Path) -> Path:
    fig = _figure(8.5, 4.2 + 0.16 * len(shown.options))
    ax = fig.subplots()
    for index, (start, end) in enumerate(shown.segments):
        ax.axvspan(start, end, color="tab:blue", alpha=0.15, label="ground truth" if index == 0 else None)
    ax.plot(shown.timestamps, shown.attention, "--o", ms=3, lw=1, color="grey", label="before smoothing")
    ax.plot(shown.timestamps, shown.weights, "-o", ms=3, lw=1.5, color="black", label="after smoothing")
    top = float(max(shown.weights.max(initial=0.0), shown.attention.max(initial=0.0))) or 1.0
    for level, (rule, (start, end)) in enumerate(shown.spans.items()):
        height = top * (1.08 + 0.07 * level)
        ax.hlines(height, start, end, color=RULE_COLOURS.get(rule, "grey"), lw=3, label=f"{rule} span")
    ax.set_ylim(0.0, top * (1.15 + 0.07 * len(shown.spans)))
    ax.set_xlim(0.0, shown.duration or float(shown.timestamps[-1]))
    ax.set_xlabel("seconds", fontsize=8)
    ax.set_ylabel("frame weight", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(_title(shown), fontsize=7.5, loc="left")
    fig.tight_layout()
    return _save(fig, path)
