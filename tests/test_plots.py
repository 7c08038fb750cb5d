"""The offline pictures: dvclive's history read back, the kept epoch's summary, the PNGs the stages declare,
and `cra show`'s one-question figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.evaluation.plots import (
    GROUNDING_HISTOGRAMS,
    TRAINING_CURVES,
    find_question,
    grounding_histograms,
    question_figure,
    question_overlaps,
    training_curves,
)
from pipeline.training.history import kept_epoch_summary, read_history, selected_step
from tests.conftest import REPO_ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_SIGNATURE


def write_dvclive_history(log_dir: Path, metrics: dict[str, list[float]]) -> None:
    """TSV files as dvclive 3 writes them: `plots/metrics/<name>.tsv` with columns `step` and the last name part."""
    for name, values in metrics.items():
        path = log_dir / "plots" / "metrics" / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [f"step\t{name.rsplit('/', 1)[-1]}"] + [f"{step}\t{value}" for step, value in enumerate(values)]
        path.write_text("\n".join(rows) + "\n")


HISTORY = {
    "train/loss/total": [2.0, 1.5, 1.2, 1.1],
    "train/loss/qa": [1.6, 1.2, 1.0, 0.9],
    "train/lr": [0.001, 0.0009, 0.0005, 0.0],
    "train/gsg_sigma": [1.0, 1.1, 1.2, 1.25],
    "val/acc_qa": [20.0, 35.0, 50.0, 45.0],
    "val/posthoc/iop@0.5": [5.0, 8.0, 12.5, 11.0],
    "val/posthoc/miop": [10.0, 12.0, 15.0, 14.0],
    "val/selected": [1.0, 1.0, 1.0, 0.0],
}


def test_history_reads_dvclive_tsvs_and_finds_the_kept_epoch(tmp_path: Path):
    write_dvclive_history(tmp_path, HISTORY)
    history = read_history(tmp_path)
    assert set(history) == set(HISTORY)
    steps, values = history["val/posthoc/iop@0.5"]
    assert steps.tolist() == [0, 1, 2, 3] and values.tolist() == HISTORY["val/posthoc/iop@0.5"]
    assert selected_step(history) == 2  # the last epoch that improved: epoch 3
    assert selected_step({k: v for k, v in history.items() if k != "val/selected"}) is None


def test_the_summary_holds_the_kept_epochs_validation_numbers_not_the_last_ones(tmp_path: Path):
    write_dvclive_history(tmp_path, HISTORY)
    summary = kept_epoch_summary(read_history(tmp_path), epoch=3)
    assert summary == {"best_epoch": 3, "best_val": {"acc_qa": 50.0, "posthoc": {"iop@0.5": 12.5, "miop": 15.0}}}
    # No validation split: only the epoch.
    assert kept_epoch_summary({"train/lr": (np.arange(2), np.ones(2))}, epoch=2) == {"best_epoch": 2, "best_val": {}}


def test_training_curves_are_a_png(tmp_path: Path):
    write_dvclive_history(tmp_path / "log", HISTORY)
    path = training_curves(read_history(tmp_path / "log"), tmp_path / "plots" / TRAINING_CURVES)
    assert is_png(path)
    # An empty history (a run that logged nothing) still gives a picture, saying so.
    assert is_png(training_curves({}, tmp_path / "empty.png"))


def test_question_overlaps_are_the_official_per_question_maxima():
    spans = np.array([[2.0, 4.0], [0.0, 10.0], [5.0, 6.0]])
    segments = [[[3.0, 5.0]], [], [[0.0, 1.0], [5.0, 8.0]]]  # the second question has no label
    ious, iops = question_overlaps(spans, segments)
    assert ious == pytest.approx([1 / 3, 1 / 3])  # [2,4] vs [3,5]: 1 / 3; [5,6] vs [5,8]: 1 / 3
    assert iops == pytest.approx([0.5, 1.0])
    assert [len(a) for a in question_overlaps(spans[:2], [[], []])] == [0, 0]


def test_grounding_histograms_are_a_png_even_without_labels(tmp_path: Path):
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 8, size=20)
    spans = np.stack([starts, starts + 2.0], axis=1)
    segments = [[[float(s) + 0.5, float(s) + 3.0]] for s in starts]
    splits = {
        "test_iid": ({"prehoc": spans, "posthoc": spans + 0.5, "merged": spans}, segments),
        "unlabelled": ({"posthoc": spans}, [[] for _ in starts]),
    }
    assert is_png(grounding_histograms(splits, tmp_path / GROUNDING_HISTOGRAMS))


def test_dvc_yaml_declares_the_pngs_the_stages_write():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]

    def plot_paths(stage: str) -> set[str]:
        return {next(iter(entry)) if isinstance(entry, dict) else entry for entry in stages[stage].get("plots", [])}

    assert f"${{paths.plots}}/{TRAINING_CURVES}" in plot_paths("train")
    assert f"${{paths.plots}}/{GROUNDING_HISTOGRAMS}" in plot_paths("evaluate")
    # `dvc plots show` writes its HTML there: not something to commit.
    assert "dvc_plots/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def write_evaluation(folder: Path) -> tuple[Path, Path]:
    """A QA table and a predictions.parquet: qid "0" in two videos of test_iid, qid "1" once (T = 4)."""
    import pyarrow as pa

    from pipeline.artifacts import schemas
    from pipeline.artifacts.parquet import write_table

    keys = [("test_iid", "v1", "0"), ("test_iid", "v2", "0"), ("test_ood", "v3", "1")]
    qa = {
        "split": [k[0] for k in keys],
        "qid": [k[2] for k in keys],
        "video_id": [k[1] for k in keys],
        "question": ["why did the red circle grow", "what did the square do", "what happened after the flash"],
        "options": [["a", "b", "c"], ["grew", "shrank", "vanished"], ["x", "y", "z"]],
        "answer": [0, 1, 2],
        "type": ["CW", "DO", "TN"],
        "segments": [[[1.0, 2.5]], [[0.5, 1.0], [3.0, 4.0]], []],
        "duration": [4.0, 4.5, None],
    }
    timestamps = [[0.5, 1.5, 2.5, 3.5]] * 3
    predictions = {
        "split": qa["split"],
        "qid": qa["qid"],
        "video_id": qa["video_id"],
        "type": qa["type"],
        "answer": qa["answer"],
        "prediction": [0, 2, 2],
        "option_scores": [[2.0, 0.1, 0.0], [0.0, 1.0, 1.5], [0.0, 0.0, 3.0]],
        "frame_weights": [[0.1, 0.5, 0.3, 0.1], [0.25] * 4, [0.4, 0.3, 0.2, 0.1]],
        "frame_attention": [[0.0, 0.8, 0.2, 0.0], [0.25] * 4, [0.4, 0.3, 0.2, 0.1]],
        "timestamps": timestamps,
        "span_prehoc": [[1.0, 2.0], [0.5, 3.5], [0.5, 1.5]],
        "span_posthoc": [[1.5, 2.5], [0.5, 3.5], [0.5, 0.5]],
        "span_merged": [[1.5, 2.0], [0.5, 3.5], [0.5, 0.5]],
    }
    qa_path, predictions_path = folder / "qa.parquet", folder / "eval" / schemas.PREDICTIONS_FILE
    write_table(pa.table(qa, schema=schemas.QA), qa_path, schemas.QA)
    write_table(pa.table(predictions, schema=schemas.PREDICTIONS), predictions_path, schemas.PREDICTIONS)
    return qa_path, predictions_path


def test_one_question_is_found_by_its_official_key_and_drawn(tmp_path: Path):
    qa_path, predictions_path = write_evaluation(tmp_path)
    shown = find_question(predictions_path, qa_path, "v2_0", split=None)
    assert (shown.key, shown.split, shown.answer, shown.prediction) == ("v2_0", "test_iid", 1, 2)
    assert shown.question == "what did the square do" and shown.options == ["grew", "shrank", "vanished"]
    assert shown.segments == [[0.5, 1.0], [3.0, 4.0]] and shown.spans["posthoc"] == [0.5, 3.5]
    assert is_png(question_figure(shown, tmp_path / "v2_0.png"))
    # A qid alone is enough when it names one question; an unlabelled one is drawn too.
    unlabelled = find_question(predictions_path, qa_path, "1", split=None)
    assert unlabelled.key == "v3_1" and unlabelled.segments == []
    assert is_png(question_figure(unlabelled, tmp_path / "v3_1.png"))
    # Before and after smoothing are the two weight columns.
    first = find_question(predictions_path, qa_path, "v1_0", split="test_iid")
    assert first.attention.tolist() == pytest.approx([0.0, 0.8, 0.2, 0.0])
    assert first.weights.tolist() == pytest.approx([0.1, 0.5, 0.3, 0.1])


def test_an_ambiguous_or_unknown_question_is_a_clear_error(tmp_path: Path):
    qa_path, predictions_path = write_evaluation(tmp_path)
    with pytest.raises(PipelineError, match=r"'0' names 2 questions \(test_iid v1_0, test_iid v2_0\)"):
        find_question(predictions_path, qa_path, "0", split=None)
    with pytest.raises(PipelineError, match=r"no question 'v9_0' .*e\.g\. v1_0, v2_0, v3_1"):
        find_question(predictions_path, qa_path, "v9_0", split=None)
    with pytest.raises(PipelineError, match=r"no question 'v3_1' in split 'test_iid'"):
        find_question(predictions_path, qa_path, "v3_1", split="test_iid")


def test_cra_show_writes_a_png(tmp_path: Path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    qa_path, predictions_path = write_evaluation(tmp_path)
    out = tmp_path / "figures" / "q.png"
    result = CliRunner().invoke(
        app,
        ["show", "v1_0", "--out", str(out), "--params", str(REPO_ROOT / "params.yaml")]
        + ["-S", f"paths.qa_table={qa_path}", "-S", f"paths.predictions={predictions_path.parent}"],
    )
    assert result.exit_code == 0, result.output
    assert f"test_iid v1_0: wrote {out}" in result.output and is_png(out)
    result = CliRunner().invoke(
        app, ["show", "0", "--params", str(REPO_ROOT / "params.yaml"), "-S", f"paths.qa_table={qa_path}"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
