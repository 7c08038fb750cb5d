"""End-to-end smoke run of the whole DVC DAG on a tiny synthetic set, and the caching contract.

The project (code + dvc.yaml + params.yaml) is copied into a fresh git + DVC repo in a temporary
folder, shrunk to the `tiny` preset, and driven with the real `dvc` CLI, as a user would.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.evaluation.plots import GROUNDING_HISTOGRAMS, TRAINING_CURVES
from tests.conftest import REPO_ROOT
from tests.test_plots import is_png

pytestmark = pytest.mark.slow

STAGES = ["generate", "prepare", "visual_features", "text_features", "svo", "confounders", "train", "evaluate"]
DVC = str(Path(sys.executable).with_name("dvc"))
GIT_IDENTITY = ["-c", "user.name=cra-tests", "-c", "user.email=cra-tests@example.com"]


def tiny_params(params: dict) -> dict:
    params["synthetic"]["preset"] = "tiny"
    params["decode"]["num_frames"] = 8
    params["features"]["visual"]["batch_size"] = 32
    params["clusters"].update(visual_k=8, language_k=4)
    params["model"].update(d_model=32, heads=4, layers=1)
    params["gsg"]["kernel_size"] = 3
    params["train"].update(epochs=2, batch_size=8, num_threads=1)
    params["eval"]["plot_examples"] = 2
    return params


def stage_env() -> dict[str, str]:
    """The environment `make` gives DVC: this interpreter's folder first on PATH, where dvc.yaml finds `python`."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "CRA_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run(args: list[str], cwd: Path) -> str:
    env = stage_env()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{output[-6000:]}"
    return output


def stages_run(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


def changed_stages(project: Path) -> set[str]:
    status = json.loads(run([DVC, "status", "--json"], project))
    return {name.split(":")[-1] for name in status}


def tiny_project(root: Path, params: dict) -> Path:
    """A git + DVC repository at `root` with the pipeline's code, dvc.yaml and `params` (nothing run yet)."""
    for name in ("pipeline", "stages", "models"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "constraints.txt", ".gitignore"):
        shutil.copy(REPO_ROOT / name, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run([DVC, "init", "-q"], root)
    run([DVC, "config", "core.analytics", "false"], root)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    params = tiny_params(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    root = tiny_project(tmp_path_factory.mktemp("cra_project"), params)
    output = run([DVC, "repro"], root)
    assert stages_run(output) == set(STAGES), output[-3000:]
    run(["git", *GIT_IDENTITY, "add", "-A"], root)
    run(["git", *GIT_IDENTITY, "commit", "-qm", "tiny pipeline"], root)
    return root


def test_full_dag_writes_every_artifact(project: Path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    paths = params["paths"]
    for key in ("qa_table", "video_manifest", "visual_features", "svo_graphs", "metrics"):
        assert (project / paths[key]).is_file(), key
    for key in ("text_features", "confounders", "checkpoint", "predictions"):
        assert any((project / paths[key]).iterdir()), key
    metrics = json.loads((project / paths["metrics"]).read_text())
    assert list(metrics) == ["test_iid", "test_ood", "checkpoint"]  # the evaluation splits first
    assert metrics["checkpoint"]["epoch"] in (1, 2) and metrics["checkpoint"]["selected_by"] == "acc_qa"
    for name in ("test_iid", "test_ood"):
        split = metrics[name]
        assert 0.0 <= split["acc_qa"] <= 100.0
        # Diagnostics: the video-bootstrap interval brackets the point estimate; shortcut shares are shares.
        ci = split["ci95"]
        assert ci["acc_qa"]["low"] <= split["acc_qa"] <= ci["acc_qa"]["high"]
        assert ci["posthoc"]["miop"]["low"] <= split["posthoc"]["miop"] <= ci["posthoc"]["miop"]["high"]
        assert 0.0 <= split["frame_entropy"] <= 1.0 and split["attention_mass"] >= 0.0
        assert set(split["shortcut_share"]) == {"visual", "language"}
        assert all(0.0 <= share <= 1.0 for share in split["shortcut_share"].values())
        for rule in ("prehoc", "posthoc", "merged", "reference_whole", "reference_center", "reference_random"):
            assert {"acc_qa", "acc_gqa", "miop", "iop@0.3", "iop@0.5", "miou", "iou@0.3", "iou@0.5"} <= set(split[rule])
        # The whole-video span contains every ground-truth segment: IoP is the segment's share of the video.
        assert split["reference_whole"]["miop"] < 100.0
    assert (project / paths["predictions"] / "test_ood" / "grounding.png").is_file()
    # The offline pictures, declared as DVC image plots.
    for name in (TRAINING_CURVES, GROUNDING_HISTOGRAMS):
        assert is_png(project / paths["plots"] / name), name
    # The training half of the DVC metrics: the kept epoch and its validation numbers (dvclive adds `step`).
    summary = json.loads((project / paths["train_log"] / "metrics.json").read_text())
    assert set(summary) == {"best_epoch", "best_val", "step"}
    assert summary["best_epoch"] == metrics["checkpoint"]["epoch"] and "acc_qa" in summary["best_val"]


def test_official_files_rescore_to_the_stage_metrics(project: Path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    split_dir = project / params["paths"]["predictions"] / "test_iid"
    output = run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "score",
            "--gsub",
            str(split_dir / "gsub.json"),
            "--ground",
            str(split_dir / "ground_posthoc.json"),
            "--qa",
            str(split_dir / "qa.json"),
            "--json",
        ],
        project,
    )
    rescored = json.loads(output.strip().splitlines()[-1])
    metrics = json.loads((project / params["paths"]["metrics"]).read_text())["test_iid"]["posthoc"]
    for key, value in metrics.items():
        assert rescored[key] == pytest.approx(value, abs=1e-3), key


def test_posthoc_weights_rescore_to_the_stage_metrics(project: Path):
    """weights.json holds exactly what the post-hoc rule read: rescoring it with `cra score --weights`
    reproduces the stage's post-hoc metrics to 1e-6 (the unrounded ones in report.json)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    predictions = project / params["paths"]["predictions"]
    report = json.loads((predictions / "report.json").read_text())
    for split in ("test_iid", "test_ood"):
        split_dir = predictions / split
        output = run(
            [sys.executable, "-m", "pipeline", "score", "--gsub", str(split_dir / "gsub.json")]
            + ["--weights", str(split_dir / "weights.json"), "--frame2time", str(split_dir / "frame2time.json")]
            + ["--qa", str(split_dir / "qa.json"), "--json"],
            project,
        )
        rescored = json.loads(output.strip().splitlines()[-1])
        expected = report["splits"][split]["rules"]["posthoc"]["overall"]
        for key, value in expected.items():
            assert rescored[key] == pytest.approx(value, abs=1e-6), (split, key)


def terminal_run(args: list[str], cwd: Path, columns: int = 120) -> list[str]:
    """The lines `args` prints on a terminal `columns` wide (rich, which DVC draws its tables with, reads COLUMNS)."""
    done = subprocess.run(args, cwd=cwd, env={**stage_env(), "COLUMNS": str(columns)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_dvc_metrics_show_is_the_headline_and_fits_120_columns(project: Path):
    lines = terminal_run([DVC, "metrics", "show"], project)
    assert max(map(len, lines)) <= 120, "\n".join(lines)
    header, values = lines[0].split(), lines[1].split()
    assert header == ["Path", "test_iid.gqa", "test_iid.qa", "test_ood.gqa", "test_ood.qa"]
    headline = json.loads((project / "metrics" / "headline.json").read_text())
    metrics = json.loads((project / "metrics" / "eval.json").read_text())
    assert values[0] == "metrics/headline.json"
    assert headline["test_ood"] == {
        "qa": round(metrics["test_ood"]["acc_qa"], 2),
        "gqa": round(metrics["test_ood"]["posthoc"]["acc_gqa"], 2),
    }
    # Every number is still one command away (the file is a plain output, not a declared metric).
    assert "ci95" in "".join(terminal_run([DVC, "metrics", "show", "--json", "metrics/eval.json"], project))


def test_cra_show_draws_a_question_of_the_last_evaluation(project: Path, tmp_path: Path):
    import pyarrow.parquet as pq

    first = pq.read_table(project / "data" / "eval" / "predictions.parquet").slice(0, 1).to_pylist()[0]
    key = f"{first['video_id']}_{first['qid']}"
    out = tmp_path / "question.png"
    output = run([sys.executable, "-m", "pipeline", "show", key, "--split", first["split"], "--out", str(out)], project)
    assert f"{first['split']} {key}: wrote {out}" in output
    assert is_png(out)
    unknown = subprocess.run(
        [sys.executable, "-m", "pipeline", "show", "no_such_video_0"],
        cwd=project,
        env=stage_env(),
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "no question 'no_such_video_0'" in unknown.stdout + unknown.stderr


def test_nothing_changed_runs_nothing(project: Path):
    assert changed_stages(project) == set()
    assert stages_run(run([DVC, "repro"], project)) == set()


def test_visual_params_invalidate_visual_features_only(project: Path):
    # `dvc status` lists the stages whose own deps or params changed; downstream stages re-run
    # only if those outputs then change. Text features and SVO must not be touched.
    params_path = project / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    params["features"]["visual"]["batch_size"] = 16
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert changed_stages(project) == {"visual_features"}
    finally:
        params_path.write_text(original)


def test_more_processes_rewrite_the_same_features_and_nothing_downstream(project: Path):
    # Two processes under torchrun (gloo) write byte-identical artifacts, so DVC finds the outputs of
    # visual_features and text_features unchanged and re-runs nothing after them.
    output = run([DVC, "exp", "run", "--temp", "-S", "features.launch.nproc_per_node=2"], project)
    assert stages_run(output) == {"visual_features", "text_features"}, output[-3000:]
    assert "under torchrun" in output


def test_a_clone_pulls_the_features_from_a_remote_and_reruns_only_training(project: Path, tmp_path: Path):
    # Machine A: a DVC remote (a local folder here; s3://, ssh://, gs:// alike), committed, and a push.
    run([DVC, "remote", "add", "--default", "shared", str(tmp_path / "dvc-remote")], project)
    run(["git", *GIT_IDENTITY, "commit", "-qm", "shared DVC remote", ".dvc/config"], project)
    run([DVC, "push", "--all-commits"], project)
    # Machine B: a clone pulls everything up to the features and confounder dictionaries, then reproduces.
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run([DVC, "config", "--local", "core.analytics", "false"], clone)
    run([DVC, "pull", "--with-deps", "confounders", "text_features"], clone)
    output = run([DVC, "repro"], clone)
    assert stages_run(output) == {"train", "evaluate"}, output[-3000:]
    for stage in ("generate", "prepare", "visual_features", "text_features", "svo", "confounders"):
        assert f"Stage '{stage}' didn't change, skipping" in output, stage


def test_exp_run_temp_works_as_written_and_reruns_only_training_and_evaluation(project: Path):
    # `--temp` (like `--queue`) runs in a copy of the repository without .venv: the stage commands find
    # `python` on PATH, so no param points at an interpreter. The workspace keeps its params.
    params_before = (project / "params.yaml").read_text()
    output = run([DVC, "exp", "run", "--temp", "-S", "gsg.sigma_init=2.0"], project)
    assert stages_run(output) == {"train", "evaluate"}, output[-3000:]
    for stage in ("generate", "prepare", "visual_features", "text_features", "svo", "confounders"):
        assert f"Stage '{stage}' didn't change, skipping" in output, stage
    assert (project / "params.yaml").read_text() == params_before


def readme_exp_show_commands() -> list[list[str]]:
    """The `dvc exp show` command lines of README.md's Experiments section, without their comments."""
    section = (REPO_ROOT / "README.md").read_text().split("## Experiments", 1)[1].split("\n## ", 1)[0]
    lines = [line.split("  #", 1)[0] for line in section.splitlines() if line.startswith("dvc exp show")]
    return [shlex.split(line) for line in lines]


def test_exp_show_views_fit_120_columns(project: Path):
    # After the `--temp` run above: the workspace, its baseline and one experiment with gsg.sigma_init changed.
    # DVC squeezes a table wider than the terminal by hiding columns (each becomes a "…" column): every
    # metric and param column of the README's views must stay visible (a dependency's hash may go).
    commands = readme_exp_show_commands()
    assert ["dvc", "exp", "show", "--only-changed"] in commands and len(commands) >= 2
    for command in commands:
        lines = terminal_run([DVC, *command[1:], "--no-pager"], project)
        text = "\n".join(lines)
        assert max(map(len, lines)) <= 120, f"{shlex.join(command)}:\n{text}"
        csv_header = terminal_run([DVC, *command[1:], "--csv"], project)[0].split(",")
        wanted = [column for column in csv_header if column.startswith(("test_", "gsg.", "model."))]
        assert "gsg.sigma_init" in wanted and ("--keep" not in command or "test_ood.qa" in wanted), csv_header
        assert all(column in text for column in wanted), f"{shlex.join(command)}:\n{text}"
        assert "[" in text  # the experiment's row


def test_exp_run_gsg_reruns_only_training_and_evaluation(project: Path):
    # Not 2.0: the `--temp` run above left that one in DVC's run cache, which would restore it without running.
    output = run([DVC, "exp", "run", "-S", "gsg.sigma_init=3.0"], project)
    assert stages_run(output) == {"train", "evaluate"}, output[-3000:]


def test_failed_exp_run_names_the_key_and_leaves_params_changed(project: Path):
    # DVC writes -S values into params.yaml before running and leaves them when a stage fails (the README
    # says so, and how to restore the file); the first stage that runs refuses the value by name.
    env = stage_env()
    try:
        done = subprocess.run(
            [DVC, "exp", "run", "-S", "cma.temperature=.inf"], cwd=project, env=env, capture_output=True, text=True
        )
        output = done.stdout + done.stderr
        assert done.returncode != 0
        assert "`cma.temperature` must be a finite number, got inf" in output and "Traceback" not in output
        assert "failed to reproduce 'train'" in output  # the first stage that reads cma
        # DVC wrote the value (as the string '.inf') and left it.
        assert yaml.safe_load((project / "params.yaml").read_text())["cma"]["temperature"] == ".inf"
    finally:
        run(["git", "checkout", "params.yaml"], project)  # what the README says to run
    assert yaml.safe_load((project / "params.yaml").read_text())["cma"]["temperature"] == 0.07


def test_re_rendered_videos_re_run_feature_extraction(project: Path):
    # Another visual nuisance re-renders the videos with the same timelines: the manifest (paths,
    # frame counts, sampled indices) can stay byte-identical, so the videos themselves must be deps.
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["synthetic"]["rho_visual"] = 0.2 if params["synthetic"]["rho_visual"] != 0.2 else 0.7
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    assert {"generate", "visual_features"} <= stages_run(run([DVC, "repro"], project))
