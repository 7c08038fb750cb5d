"""Stage `evaluate`: answer and ground every evaluation split with the trained checkpoint, and score it.

Writes, per split under `paths.predictions/<split>/`: the official-format result files
(`ground_{rule}.json`, `weights.json`, `qa.json`, `frame2time.json`) with the split's labels
(`gsub.json`), so anyone can rescore them with `cra score`; a per-type report; and a figure of the
frame weights against the ground truth. `paths.predictions/predictions.parquet` holds one row per
question (schema `PREDICTIONS`; `cra show` draws one). `paths.plots/grounding_histograms.png` (a DVC image
plot) shows each split's per-question IoU and IoP under every rule. `paths.headline` (the DVC metrics)
holds each split's Acc@QA and post-hoc Acc@GQA; `paths.metrics` (a plain output: `cra report` reads it)
holds, per split: Acc@QA, every metric under every grounding rule, the trivial reference spans (whole
video, centre half, random) scored on the same questions, the attention mass on ground-truth frames and the
weights' entropy, 95 % intervals of all of these by bootstrap over videos (`ci95`), and on the synthetic
benchmark the shortcut shares (predictions that follow a planted nuisance), and how many of the split's
questions were scored and why the others were not (`n_total`, `n_scored`, `n_grounded`,
`dropped: {reason: count}`, see `SplitQuestions.counts`); plus the checkpoint's epoch and selection metric.
Every rule reads the weights that pooled the frames (see `pipeline.evaluation.predict.rule_spans`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.artifacts import schemas
from pipeline.artifacts.checkpoint import load_checkpoint
from pipeline.artifacts.parquet import write_table
from pipeline.config import Params
from pipeline.data.synthetic.records import read_question_nuisances
from pipeline.errors import PipelineError
from pipeline.evaluation.diagnostics import diagnose_split, shortcut_share
from pipeline.evaluation.plots import GROUNDING_HISTOGRAMS, grounding_histograms
from pipeline.evaluation.predict import SplitPredictions, predict, rule_spans, score_split
from pipeline.evaluation.scoring import format_report, write_official_files
from pipeline.runtime import get_logger, resolve_device
from pipeline.training.batches import (
    SplitQuestions,
    load_feature_bank,
    load_split,
    read_qa_table,
    read_video_statuses,
)

log = get_logger("evaluate")


def format_counts(counts: dict[str, Any]) -> str:
    """One line of the report: how many of the split's questions were scored, and why the others were not
    (published numbers are over all labelled questions: a split with drops is not comparable with them)."""
    line = f"questions: {counts['n_total']} in the split, {counts['n_scored']} scored, {counts['n_grounded']} grounded"
    if counts["dropped"]:
        line += "; not scored or not grounded: " + ", ".join(f"{k} {v}" for k, v in counts["dropped"].items())
    return line


def split_metrics(
    result: dict[str, Any], diagnostics: dict[str, Any], counts: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The DVC metrics of one split, most-read first: size, Acc@QA, shortcut shares, attention diagnostics,
    `{rule: overall}`, `{reference_<kind>: overall}`, the question counts, then the bootstrap intervals."""
    metrics: dict[str, Any] = {"n": result["n"], "acc_qa": round(result["acc_qa"], 4)}
    for key in ("shortcut_share", "attention_mass", "frame_entropy"):
        if diagnostics.get(key) is not None:
            metrics[key] = diagnostics[key]
    for rule, scored in result["rules"].items():
        metrics[rule] = {k: round(v, 4) for k, v in scored["overall"].items()}
    for kind, scored in result["references"].items():
        metrics[f"reference_{kind}"] = {k: round(v, 4) for k, v in scored["overall"].items()}
    metrics.update(counts or {})
    metrics["ci95"] = diagnostics["ci95"]
    return metrics


# The headline's grounding rule: NExT-GQA's official one.
HEADLINE_RULE = "posthoc"


def headline_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The DVC metrics: per split, Acc@QA (`qa`) and Acc@GQA under the post-hoc rule (`gqa`), to 2 decimals.

    Two short keys per split so that `dvc metrics show` and `dvc exp show --only-changed` fit 120 columns
    (DVC hides the metric columns that do not fit; every number stays in `paths.metrics`). A split without
    grounding labels, or a run without the post-hoc rule, has `qa` only."""
    headline: dict[str, dict[str, float]] = {}
    for split, numbers in metrics.items():
        headline[split] = {"qa": round(numbers["acc_qa"], 2)}
        acc_gqa = numbers.get(HEADLINE_RULE, {}).get("acc_gqa")
        if acc_gqa is not None:
            headline[split]["gqa"] = round(acc_gqa, 2)
    return headline


def shortcut_shares(params: Params, questions: SplitQuestions, predictions: np.ndarray) -> dict[str, float] | None:
    """On the synthetic benchmark: the share of predictions whose option's kind is the one paired with the
    question's planted visual / linguistic nuisance (chance 0.2 where the nuisances are independent)."""
    if params.data.dataset != "synthetic":
        return None
    nuisances = read_question_nuisances(params.data.annotation_dir, questions.split)
    records = [nuisances[(v, q)] for v, q in zip(questions.video_ids, questions.qids, strict=True)]
    chosen = [r.option_kinds[int(p)] for r, p in zip(records, predictions, strict=True)]
    return {
        "visual": round(shortcut_share(chosen, [r.visual_kind for r in records]), 4),
        "language": round(shortcut_share(chosen, [r.language_kind for r in records]), 4),
    }


def prediction_rows(
    questions: SplitQuestions, predictions: SplitPredictions, spans: dict[str, np.ndarray]
) -> dict[str, list]:
    return {
        "split": [questions.split] * len(questions),
        "qid": questions.qids,
        "video_id": questions.video_ids,
        "type": questions.types,
        "answer": questions.answers.tolist(),
        "prediction": predictions.predictions.tolist(),
        "option_scores": predictions.option_scores.tolist(),
        "frame_weights": predictions.frame_weights.tolist(),
        "frame_attention": predictions.frame_attention.tolist(),
        "timestamps": predictions.timestamps.tolist(),
        **{f"span_{rule}": spans[rule].tolist() for rule in ("prehoc", "posthoc", "merged")},
    }


def plot_grounding(
    path: Path,
    questions: SplitQuestions,
    predictions: SplitPredictions,
    spans: dict[str, np.ndarray],
    count: int,
    seed: int,
) -> None:
    """Frame weights of `count` random labelled questions, with the ground truth shaded and each rule's span."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labelled = [i for i, segments in enumerate(questions.segments) if segments]
    if not labelled or count <= 0:
        return
    chosen = np.random.default_rng(seed).choice(labelled, size=min(count, len(labelled)), replace=False)
    fig, axes = plt.subplots(len(chosen), 1, figsize=(8, 1.9 * len(chosen)), squeeze=False)
    colours = {"prehoc": "tab:orange", "posthoc": "tab:green", "merged": "tab:purple"}
    for ax, i in zip(axes[:, 0], sorted(chosen), strict=True):
        t = predictions.timestamps[i]
        for start, end in questions.segments[i]:
            ax.axvspan(start, end, color="tab:blue", alpha=0.15, label="ground truth")
        ax.plot(t, predictions.frame_weights[i], "-o", ms=2, color="black", label="frame weights")
        top = predictions.frame_weights[i].max()
        for level, (rule, rule_spans_) in enumerate(spans.items()):
            start, end = rule_spans_[i]
            ax.hlines(top * (1.08 + 0.08 * level), start, end, color=colours.get(rule, "grey"), lw=3, label=rule)
        verdict = "right" if predictions.predictions[i] == questions.answers[i] else "wrong"
        ax.set_title(
            f"{questions.video_ids[i]}_{questions.qids[i]} ({questions.types[i]}, answer {verdict})", fontsize=8
        )
        ax.tick_params(labelsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="upper right", fontsize=7, ncol=len(unique))
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(params: Params) -> None:
    device = resolve_device(params.eval.device)
    model, state = load_checkpoint(params.paths.checkpoint, device)
    bank = load_feature_bank(params, with_dictionaries=False)  # the dictionaries live in the checkpoint
    if state.get("provenance") != bank.provenance():
        raise PipelineError(
            f"the checkpoint in {params.paths.checkpoint} was trained on features {state.get('provenance')}, "
            f"but the current features are {bank.provenance()}: re-run the train stage (`dvc repro`)"
        )
    qa = read_qa_table(params)
    statuses = read_video_statuses(params)  # why a question's video has no features
    out_dir = Path(params.paths.predictions)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {}
    report: dict[str, Any] = {"variant": state.get("variant"), "checkpoint_epoch": state.get("epoch"), "splits": {}}
    rows: dict[str, list] = {name: [] for name in schemas.PREDICTIONS.names}
    grounded: dict[str, tuple[dict[str, np.ndarray], list]] = {}  # split -> ({rule: spans}, segments)
    for split in params.data.eval_splits:
        questions = load_split(qa, split, bank, statuses)
        counts = questions.counts()
        if counts["n_scored"] < counts["n_total"]:
            log.warning(
                "%s: %d of %d questions are not scored (%s): not comparable with numbers over all its questions",
                split,
                counts["n_total"] - counts["n_scored"],
                counts["n_total"],
                ", ".join(f"{k} {v}" for k, v in counts["dropped"].items() if k != "no_grounding_labels"),
            )
        predictions = predict(model, bank, questions, params.eval.batch_size, device)
        spans = rule_spans(predictions, ("prehoc", "posthoc", "merged"))
        result = score_split(questions, predictions, params.eval.rules, params.eval.references, params.eval.seed, spans)
        diagnostics = diagnose_split(
            questions.video_ids,
            predictions.predictions == questions.answers,
            {rule: spans[rule] for rule in params.eval.rules},
            questions.segments,
            predictions.frame_weights,
            questions.frame_labels,
            resamples=params.eval.bootstrap_resamples,
            seed=params.eval.seed,
        )
        diagnostics["shortcut_share"] = shortcut_shares(params, questions, predictions.predictions)
        metrics[split] = split_metrics(result, diagnostics, counts)
        report["splits"][split] = {**result, "counts": counts, "diagnostics": diagnostics}
        grounded[split] = ({rule: spans[rule] for rule in params.eval.rules}, questions.segments)
        for name, values in prediction_rows(questions, predictions, spans).items():
            rows[name].extend(values)
        split_dir = out_dir / split
        write_official_files(
            split_dir,
            questions.keys,
            spans={rule: spans[rule] for rule in params.eval.rules},
            frame_weights=predictions.frame_weights,
            answers=questions.answers.tolist(),
            predictions=predictions.predictions.tolist(),
            frame2time={v: t.tolist() for v, t in zip(questions.video_ids, predictions.timestamps, strict=True)},
        )
        (split_dir / "gsub.json").write_text(json.dumps(questions.gsub(), sort_keys=True))
        text = f"[{split}] {format_counts(counts)}"
        if result["rules"]:
            text += "\n\n" + "\n\n".join(
                f"[{split}] rule {rule}\n{format_report(scored)}" for rule, scored in result["rules"].items()
            )
            log.info("%s (%d questions)\n%s", split, len(questions), text)
        else:
            text += f"\n[{split}] Acc@QA {result['acc_qa']:.2f} (no grounding labels)"
            log.info("%s (%d questions): %s", split, len(questions), text)
        (split_dir / "report.txt").write_text(text + "\n")
        plot_grounding(
            split_dir / "grounding.png", questions, predictions, spans, params.eval.plot_examples, params.eval.seed
        )
    grounding_histograms(grounded, Path(params.paths.plots) / GROUNDING_HISTOGRAMS)
    write_table(
        pa.table(rows),
        out_dir / schemas.PREDICTIONS_FILE,
        schemas.PREDICTIONS,
        {"artifact": "predictions", "variant": state.get("variant"), "checkpoint_epoch": state.get("epoch")},
    )
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    headline_path = Path(params.paths.headline)
    headline_path.parent.mkdir(parents=True, exist_ok=True)
    headline_path.write_text(json.dumps(headline_metrics(metrics), indent=2) + "\n")  # before "checkpoint" joins
    metrics_path = Path(params.paths.metrics)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics["checkpoint"] = {"epoch": state.get("epoch"), "selected_by": state.get("selected_by")}
    # Insertion order, not sorted: the evaluation splits first, each with its headline numbers first.
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("metrics in %s, predictions and official result files in %s", metrics_path, out_dir)
