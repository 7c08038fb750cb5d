"""The `cra` CLI: every stage is a command, and expected failures are one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import REPO_ROOT

STAGE_COMMANDS = ["generate", "prepare", "visual-features", "text-features", "svo", "confounders", "train", "evaluate"]


def test_help_lists_every_stage_and_tool():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in [*STAGE_COMMANDS, "score", "show", "inspect"]:
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


def _option_helps() -> list[tuple[str, str]]:
    """(command, help text) of every option and argument of every command."""
    import typer.main

    group = typer.main.get_command(app)
    return [
        (name, param.help)
        for name, command in group.commands.items()
        for param in command.params
        if getattr(param, "help", None)
    ]


def test_help_texts_print_square_brackets_as_written():
    # Typer renders help through rich markup, where `[...]` is a style tag: unescaped, `[start_s, end_s]` vanished.
    from rich.markup import render

    bracketed = [(name, render(text).plain) for name, text in _option_helps() if "[" in render(text).plain]
    assert {name for name, _ in bracketed} >= {"score"}
    for name, plain in bracketed:
        result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "240"})
        assert result.exit_code == 0
        assert plain in result.output, (name, plain)
    score_help = CliRunner().invoke(app, ["score", "--help"], env={"COLUMNS": "240"}).output
    assert '{"<vid>_<qid>": [start_s, end_s]}' in score_help and '{"<vid>_<qid>": [w_1..w_T]}' in score_help


def test_inspect_summarises_json_without_a_schema(tmp_path: Path):
    state = {"epoch": 3, "variant": "cra", "config": {"gsg": {"sigma_init": 1.0}, "model": {}}, "spans": [1.5, 4.0]}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(state))
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "JSON object, 4 key(s)" in lines
    assert "  epoch: 3" in lines and "  variant: 'cra'" in lines
    assert "  config: object, 2 key(s): gsg, model" in lines
    assert "  spans: list of 2 number(s), [1.5 .. 4]" in lines


def test_inspect_of_a_large_json_object_previews_its_first_keys(tmp_path: Path):
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({f"v{i}_0": [0.5, 0.5] for i in range(100)}))
    result = CliRunner().invoke(app, ["inspect", str(path), "--rows", "2"])
    assert result.exit_code == 0, result.output
    assert "first 2 of 100 keys:" in result.output
    assert "  v1_0: list of 2 number(s)" in result.output and "v2_0" not in result.output


def test_inspect_lists_checkpoint_tensors_and_state(tmp_path: Path):
    from safetensors.numpy import save_file

    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    save_file(
        {"gsg.sigma": np.ones((), np.float32), "backbone.proj.weight": np.zeros((4, 3), np.float16)},
        str(checkpoint / "model.safetensors"),
    )
    (checkpoint / "model.json").write_text(json.dumps({"epoch": 2}))
    (checkpoint / "notes.txt").write_text("not an artifact")
    result = CliRunner().invoke(app, ["inspect", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert f"== {checkpoint / 'model.json'}" in result.output and "  epoch: 2" in result.output
    assert "tensors: 2  elements: 13  bytes: 28" in result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert ["backbone.proj.weight", "F16", "[4,", "3]"] in lines and ["gsg.sigma", "F32", "[]"] in lines
    assert "notes.txt" not in result.output


def test_inspect_of_unknown_or_broken_files_is_a_clear_error(tmp_path: Path):
    other = tmp_path / "notes.txt"
    other.write_text("x")
    result = CliRunner().invoke(app, ["inspect", str(other)])
    assert result.exit_code == 2 and "reads .parquet, .json, .safetensors files" in result.output
    for name, kind in (("broken.json", "JSON"), ("broken.safetensors", "safetensors")):
        (tmp_path / name).write_bytes(b"\xff\x01")
        result = CliRunner().invoke(app, ["inspect", str(tmp_path / name)])
        assert result.exit_code == 2 and f"is not a readable {kind} file" in result.output, result.output
        assert "Traceback" not in result.output
