"""The `cra` command line: thin typer commands that parse options and call stage functions.

Every stage command takes `--params` (default `params.yaml`) and repeatable `--set key=value`
overrides, loads the typed config once, and calls `stages.<name>.run(params)`. Expected failures
(`PipelineError`) print one clear message and exit with status 2, without a traceback.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pipeline.errors import PipelineError

app = typer.Typer(
    name="cra",
    help="CRA video question grounding pipeline: one command per DVC stage, plus scoring, plots and inspection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="params.yaml to read")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-S", help="override a param, e.g. -S gsg.sigma_init=2.0")
]


def user_errors(func: Callable) -> Callable:
    """Turn expected failures into one readable line and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except PipelineError as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _run_stage(stage: str, params_path: Path, overrides: list[str] | None) -> None:
    from pipeline.config import load_params

    params = load_params(params_path, overrides)
    importlib.import_module(f"stages.{stage}").run(params)


def _stage_command(stage: str, help_text: str) -> None:
    @user_errors
    def command(
        params: ParamsOption = Path("params.yaml"),
        set_: SetOption = None,
    ) -> None:
        _run_stage(stage, params, set_)

    command.__doc__ = help_text
    app.command(name=stage.replace("_", "-"), help=help_text)(command)


@app.command()
@user_errors
def generate(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: paths.synthetic)")] = None,
    videos: Annotated[int | None, typer.Option(help="total number of videos (default: the preset's)")] = None,
    seed: Annotated[int | None, typer.Option(help="generator seed (default: synthetic.seed)")] = None,
) -> None:
    """Render the synthetic confounded VideoQG benchmark (videos + NExT-GQA-format annotations)."""
    from pipeline.config import load_params
    from stages import generate as stage

    cfg = load_params(params, set_)
    stage.generate(
        out_dir=Path(out or cfg.paths.synthetic),
        cfg=cfg.synthetic if seed is None else _replace(cfg.synthetic, seed=seed),
        total_videos=videos,
    )


def _replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


_stage_command("prepare", "Read the dataset's annotations into the QA table and probe every video into the manifest.")
_stage_command("visual_features", "Decode sampled frames with decord and encode them with open_clip (Parquet).")
_stage_command("text_features", "Encode questions, options and question+answer texts into token features (Parquet).")
_stage_command("svo", "Parse each question/answer into CRA's 8-node subject-verb-object semantic graph.")
_stage_command("confounders", "Cluster the visual and linguistic confounder dictionaries (MiniBatchKMeans).")
_stage_command("train", "Train the CRA model (or the TempCLIP baseline) and keep the best checkpoint.")
_stage_command("evaluate", "Predict and ground on every evaluation split; write metrics, predictions, official JSON.")


@app.command()
@user_errors
def score(
    gsub: Annotated[Path, typer.Option(help="grounding labels, NExT-GQA gsub_{split}.json format")],
    # Help texts go through rich markup, where `[...]` is a style tag: escaped, the brackets print as written.
    ground: Annotated[Path | None, typer.Option(help=escape('spans {"<vid>_<qid>": [start_s, end_s]}'))] = None,
    weights: Annotated[Path | None, typer.Option(help=escape('per-frame weights {"<vid>_<qid>": [w_1..w_T]}'))] = None,
    frame2time: Annotated[Path | None, typer.Option(help="frame timestamps, with --weights")] = None,
    qa: Annotated[Path | None, typer.Option(help='answers {"<vid>_<qid>": {"answer": a, "prediction": p}}')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Score grounding (and QA) result files with NExT-GQA's official metrics (pipeline/evaluation/scoring.py)."""
    from pipeline.evaluation import scoring

    result = scoring.score_files(gsub=gsub, ground=ground, weights=weights, frame2time=frame2time, qa=qa)
    if as_json:
        typer.echo(json.dumps(result["overall"], sort_keys=True))
    else:
        typer.echo(scoring.format_report(result))


@app.command()
@user_errors
def show(
    question: Annotated[str, typer.Argument(help="'<video_id>_<qid>' (as in the official result files), or a qid")],
    split: Annotated[str | None, typer.Option(help="the evaluation split, when the key is in several")] = None,
    out: Annotated[Path | None, typer.Option(help="PNG to write (default: show/<split>_<video_id>_<qid>.png)")] = None,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Draw one question of the last evaluation: frame weights before and after smoothing, the ground truth,
    each rule's span, and the question, options and prediction (from paths.predictions and paths.qa_table)."""
    from pipeline.artifacts.schemas import PREDICTIONS_FILE
    from pipeline.config import load_params
    from pipeline.evaluation.plots import find_question, question_figure

    cfg = load_params(params, set_)
    shown = find_question(Path(cfg.paths.predictions) / PREDICTIONS_FILE, cfg.paths.qa_table, question, split)
    path = question_figure(shown, out or Path("show") / f"{shown.split}_{shown.key}.png")
    typer.echo(f"{shown.split} {shown.key}: wrote {path}")


@app.command()
@user_errors
def inspect(
    artifact: Annotated[Path, typer.Argument(help="a .parquet, .json or .safetensors file, or a folder of them")],
    rows: Annotated[int, typer.Option(help="rows (Parquet) or entries (JSON) to preview")] = 3,
) -> None:
    """Summarise an artifact: Parquet schema, rows, metadata and first rows; JSON keys and sizes; tensor shapes."""
    from pipeline.artifacts.inspect import describe

    typer.echo(describe(artifact, preview_rows=rows))


@app.command()
@user_errors
def report(
    params: ParamsOption = Path("params.yaml"),
    work: Annotated[Path, typer.Option(help="where the study's runs are kept (resumable)")] = Path("data/study"),
    out: Annotated[Path, typer.Option(help="where the tables and the figure go")] = Path("reports"),
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="train seeds (default 0 1 2; quick: 0)")] = None,
    quick: Annotated[bool, typer.Option(help="one seed, the headline rows, two rhos")] = False,
    collect_only: Annotated[bool, typer.Option(help="only rebuild the tables from finished runs")] = False,
    force: Annotated[bool, typer.Option(help="re-run runs that are done already")] = False,
    resamples: Annotated[int, typer.Option(help="video-bootstrap resamples")] = 1000,
    rows: Annotated[
        list[str] | None, typer.Option("--row", help="only these ablation rows (repeat; default: all, quick: 4)")
    ] = None,
    rhos: Annotated[list[float] | None, typer.Option("--rho", help="only these sweep rhos (repeat)")] = None,
    no_sweep: Annotated[bool, typer.Option(help="skip the rho sweep")] = False,
) -> None:
    """Run (or collect) the deconfounding study: ablation rows over seeds and a rho sweep (pipeline/study.py).

    Runs are resumable and independent, so the study can be split over processes with --row / --rho /
    --no-sweep and collected at the end with --collect-only."""
    from pipeline import study

    study.main(params, work, out, seeds, quick, collect_only, force, resamples, rows, [] if no_sweep else rhos)


def main() -> None:  # `python -m pipeline`
    app(prog_name="cra")


if __name__ == "__main__":
    sys.exit(main())
