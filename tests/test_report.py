"""`cra report`'s tables (pipeline/study.py, pipeline/evaluation/ablation.py) on hand-made runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline import study
from pipeline.cli import app
from pipeline.data.synthetic.records import QuestionNuisances
from pipeline.evaluation.ablation import per_question_table, summarise_row


def fake_run(folder: Path, acc_iid: float, acc_ood: float, correct_ood: list[int]) -> None:
    """A finished run: metrics.json as `evaluate` writes it, and per-question values of 4 test_ood
    questions on 2 videos (and one test_iid question)."""
    folder.mkdir(parents=True)
    split_metrics = {
        "test_iid": {"acc_qa": acc_iid, "posthoc": {"acc_gqa": 10.0, "miop": 30.0}, "attention_mass": 2.0},
        "test_ood": {
            "acc_qa": acc_ood,
            "posthoc": {"acc_gqa": 5.0, "miop": 20.0},
            "attention_mass": 1.5,
            "shortcut_share": {"visual": 0.2, "language": 0.3},
        },
    }
    (folder / "metrics.json").write_text(json.dumps(split_metrics))
    n = 1 + len(correct_ood)
    table = {
        "split": ["test_iid"] + ["test_ood"] * len(correct_ood),
        "video_id": ["v0", "v1", "v1", "v2", "v2"][:n],
        "qid": [str(i) for i in range(n)],
        "acc_qa": [100.0] + [100.0 * c for c in correct_ood],
    }
    for name in (
        "acc_gqa",
        "miop",
        "miou",
        "iop@0.5",
        "iou@0.5",
        "attention_mass",
        "shortcut_visual",
        "shortcut_language",
    ):
        table[name] = [0.0] * n
    pq.write_table(pa.table(table), folder / "per_question.parquet")


def test_the_report_tables_two_fake_experiments(tmp_path: Path):
    work = tmp_path / "study"
    # CRA: test_ood accuracy 50 and 70 over two seeds; TempCLIP: 40 and 40.
    fake_run(work / "ablation" / "cra" / "seed0", 80.0, 50.0, [1, 0, 1, 0])
    fake_run(work / "ablation" / "cra" / "seed1", 90.0, 70.0, [1, 1, 1, 0])
    fake_run(work / "ablation" / "tempclip" / "seed0", 60.0, 40.0, [1, 1, 0, 0])
    fake_run(work / "ablation" / "tempclip" / "seed1", 60.0, 40.0, [1, 1, 0, 0])
    rows = [r for r in study.ROWS if r.id in ("cra", "tempclip", "blind")]
    result = study.collect(work, rows, seeds=[0, 1], rhos=[], resamples=200)
    cra = result["ablation"]["cra"]["test_ood"]["acc_qa"]
    assert cra["mean"] == pytest.approx(60.0) and cra["std"] == pytest.approx(np.std([50.0, 70.0], ddof=1))
    assert cra["seeds"] == [50.0, 70.0]
    tempclip = result["ablation"]["tempclip"]["test_ood"]["acc_qa"]
    assert tempclip["mean"] == pytest.approx(40.0) and tempclip["std"] == 0.0
    # TempCLIP's pooled predictions: video v1 always right, v2 always wrong -> the interval spans 0..100.
    assert tempclip["ci95"] == [0.0, 100.0]
    assert result["ablation"]["cra"]["test_ood"]["shortcut_visual"]["mean"] == pytest.approx(0.2)
    assert result["missing"] == ["ablation/blind: 0 of 2 seeds"]
    study.write_report(result, {}, tmp_path / "reports", "test", 60.0)
    table = (tmp_path / "reports" / "ablation.md").read_text()
    assert "| CRA | 2 | 85.0 ± 7.1 |" in table and "| TempCLIP | 2 | 60.0 ± 0.0 |" in table  # test_iid rows
    assert "| CRA | 2 | 60.0 ± 14.1 |" in table and "[0.0, 100.0]" in table  # test_ood
    assert "Missing runs: ablation/blind" in table
    assert json.loads((tmp_path / "reports" / "ablation.json").read_text())["ablation"]["cra"]["n_seeds"] == 2


def test_the_rho_sweep_figure_is_written(tmp_path: Path):
    work = tmp_path / "study"
    for rho, acc in (("0", [60, 20, 20, 20]), ("0.95", [40, 20, 20, 20])):
        for row in ("cra", "tempclip"):
            fake_run(work / f"rho_{rho}" / row / "seed0", 80.0, acc[0], [1, 0, 0, 0])
    result = study.collect(work, [], seeds=[0], rhos=[0.0, 0.95], resamples=50)
    assert set(result["rho_sweep"]) == {"0", "0.95"}
    assert result["rho_sweep"]["0.95"]["cra"]["test_ood"]["acc_qa"]["mean"] == 40.0
    study.write_report(result, {}, tmp_path / "reports", "test", 1.0)
    assert (tmp_path / "reports" / "rho_sweep.png").stat().st_size > 1000


def test_the_sweep_point_at_the_params_rho_reads_the_ablation_runs(tmp_path: Path):
    # rho 0.9 is params.yaml's own: its cra / tempclip point is the ablation's runs, not a rho_0.9 folder.
    work = tmp_path / "study"
    for row, acc in (("cra", 55.0), ("tempclip", 45.0)):
        fake_run(work / "ablation" / row / "seed0", 80.0, acc, [1, 0, 0, 0])
        fake_run(work / "rho_0" / row / "seed0", 80.0, 33.0, [1, 0, 0, 0])
    result = study.collect(work, [], seeds=[0], rhos=[0.0, 0.9], resamples=50, params_rho=0.9)
    assert result["missing"] == []
    assert result["rho_sweep"]["0.9"]["cra"]["test_ood"]["acc_qa"]["mean"] == 55.0
    assert result["rho_sweep"]["0.9"]["tempclip"]["test_ood"]["acc_qa"]["mean"] == 45.0
    assert result["rho_sweep"]["0"]["cra"]["test_ood"]["acc_qa"]["mean"] == 33.0
    # Without the params' rho (visual and linguistic rho differ) the point needs its own folder.
    assert "0.9" not in study.collect(work, [], seeds=[0], rhos=[0.9], resamples=50)["rho_sweep"]


def test_per_question_values_match_the_stage_definitions():
    predictions = pa.table(
        {
            "split": ["test_ood", "test_ood"],
            "video_id": ["v", "v"],
            "qid": ["0", "1"],
            "answer": [1, 2],
            "prediction": [1, 0],
            "frame_weights": [[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]],
            "timestamps": [[0.5, 1.5, 2.5, 3.5]] * 2,
            "span_posthoc": [[0.0, 2.0], [3.0, 4.0]],
        }
    )
    segments = {("test_ood", "v", "0"): [[0.0, 1.0]], ("test_ood", "v", "1"): [[2.0, 3.0]]}
    nuisances = {
        ("test_ood", "v", "0"): QuestionNuisances(("a", "b", "c", "d", "e"), visual_kind="b", language_kind="c"),
        ("test_ood", "v", "1"): QuestionNuisances(("a", "b", "c", "d", "e"), visual_kind="b", language_kind="a"),
    }
    table = per_question_table(predictions, segments, nuisances).to_pydict()
    assert table["acc_qa"] == [100.0, 0.0]
    assert table["miop"] == [50.0, 0.0]  # [0, 2] covers [0, 1] half; [3, 4] misses [2, 3]
    assert table["acc_gqa"] == [100.0, 0.0]  # right and IoP >= 0.5
    assert table["attention_mass"] == [2.0, 1.0]  # 0.5 on 1 of 4 frames; 0.25 on 1 of 4
    assert table["shortcut_visual"] == [1.0, 0.0] and table["shortcut_language"] == [0.0, 1.0]
    summary = summarise_row([({}, per_question_table(predictions, segments, nuisances))], resamples=20)
    assert summary["test_ood"]["acc_qa"]["ci95"] == [50.0, 50.0]  # one video: nothing to resample


def test_report_needs_the_default_pipeline_first(tmp_path: Path):
    params = tmp_path / "params.yaml"
    text = (Path(__file__).resolve().parents[1] / "params.yaml").read_text()
    params.write_text(text.replace("data/features/visual.parquet", str(tmp_path / "nowhere.parquet")))
    result = CliRunner().invoke(
        app, ["report", "--params", str(params), "--work", str(tmp_path / "w"), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "run `make repro`" in result.output


def test_a_study_split_over_processes_is_collected_as_one(tmp_path: Path):
    # Two processes ran disjoint rows (--row); --collect-only over both writes one table with seed counts.
    work = tmp_path / "study"
    fake_run(work / "ablation" / "cra" / "seed0", 80.0, 50.0, [1, 0, 1, 0])
    fake_run(work / "ablation" / "blind" / "seed0", 20.0, 25.0, [1, 0, 0, 0])
    result = CliRunner().invoke(
        app,
        ["report", "--work", str(work), "--out", str(tmp_path / "r"), "--collect-only", "--seed", "0", "--seed", "1"]
        + ["--row", "cra", "--row", "blind", "--no-sweep", "--resamples", "20"],
    )
    assert result.exit_code == 0, result.output
    table = (tmp_path / "r" / "ablation.md").read_text()
    assert "Mode `custom`" in table and "collected from finished runs" in table
    assert "| CRA | 1 | 50.0 ± 0.0" in table and "| Blind (text only) | 1 | 25.0 ± 0.0" in table
    assert "ablation/cra: 1 of 2 seeds" in table  # a row with fewer seeds than asked is named


def test_report_refuses_an_unknown_row(tmp_path: Path):
    result = CliRunner().invoke(app, ["report", "--collect-only", "--row", "cra_typo", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "cra_typo" in result.output and "tempclip" in result.output


def test_the_sweep_at_the_params_rho_trains_in_the_ablation_folders(tmp_path: Path, monkeypatch):
    # params.yaml's rho (0.9) needs no pipeline of its own: its CRA / TempCLIP runs are the ablation's.
    calls = []
    monkeypatch.setattr(study, "run_one", lambda params, run_dir, overrides, force: calls.append(run_dir) or {})
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    timings = study.run_rho_sweep(params, tmp_path, [0.9], [0], force=False)
    assert calls == [tmp_path / "ablation" / "cra" / "seed0", tmp_path / "ablation" / "tempclip" / "seed0"]
    assert sorted(timings) == ["rho_0.9/cra/seed0", "rho_0.9/tempclip/seed0"]
    assert not (tmp_path / "rho_0.9").exists()
