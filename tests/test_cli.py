"""The `cra` CLI: every stage is a command, and expected failures are one line with exit status 2."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import REPO_ROOT

STAGE_COMMANDS = ["generate", "prepare", "visual-features", "text-features", "svo", "confounders", "train", "evaluate"]


def test_help_lists_every_stage_and_tool():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in [*STAGE_COMMANDS, "score", "inspect"]:
        assert command in result.output


def test_a_bad_override_is_one_line_and_exit_2():
    result = CliRunner().invoke(app, ["train", "--params", str(REPO_ROOT / "params.yaml"), "-S", "gsg.sigmaa=2"])
    assert result.exit_code == 2
    assert "unknown key(s) 'sigmaa' in `gsg`" in result.output
    assert "Traceback" not in result.output


def test_a_missing_artifact_names_the_stage_to_run(tmp_path: Path):
    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(
        app, ["train", "--params", str(REPO_ROOT / "params.yaml"), "-S", f"paths.visual_features={missing}/v.parquet"]
    )
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_inspect_of_a_non_parquet_file_is_a_clear_error(tmp_path: Path):
    bogus = tmp_path / "x.parquet"
    bogus.write_text("not parquet")
    result = CliRunner().invoke(app, ["inspect", str(bogus)])
    assert result.exit_code == 2
    assert "is not a readable Parquet file" in result.output
