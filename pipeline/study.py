"""The deconfounding study behind `cra report`: the standard variants over seeds, and a rho sweep.

    cra report [--quick] [--seeds 0 1 2] [--work data/study] [--out reports] [--collect-only]

Ablation: every row of `ROWS` is trained and evaluated once per seed on the default pipeline's
artifacts (run `make repro` first; the oracle rows make their own oracle features and dictionaries),
each run in its own folder under `--work` (`ablation/<row>/seed<k>/`: checkpoint, dvclive, evaluation,
`metrics.json`, `per_question.parquet`). Rho sweep: for each rho of `RHOS` the whole pipeline runs in
`rho_<rho>/` with `synthetic.rho_visual = synthetic.rho_language = rho` (generate .. confounders once,
then CRA and TempCLIP per seed), except at the params' own rho (visual = linguistic, 0.9 by default), whose
point is the ablation's CRA and TempCLIP runs. A run whose outputs exist is not run again (delete its folder, or
`--force`), so an interrupted study resumes. Everything runs in this process through the stage
functions, as `dvc repro` would, with per-run path overrides, so no run touches the workspace's params.

Writes `--out`/ablation.md and ablation.json (tables: mean ± std over seeds and the video-bootstrap
interval of the pooled predictions, on test_iid and test_ood), rho_sweep.json and rho_sweep.png
(test_ood Acc@QA and Acc@GQA against rho), and the wall time of every part.
`--quick` runs one seed, the headline rows and two rhos (about 10 minutes per training on 2 CPU cores).
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.config import Params, load_params
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger

log = get_logger("study")


@dataclass(frozen=True)
class Row:
    id: str
    label: str
    overrides: tuple[str, ...] = ()
    features: str = "default"  # default | oracle


ROWS: tuple[Row, ...] = (
    Row("cra", "CRA"),
    Row("tempclip", "TempCLIP", ("model.variant=tempclip",)),
    Row("cra_no_gs", "CRA w/o Gaussian smoothing", ("gsg.smoothing=false",)),
    Row("cra_no_cma", "CRA w/o CMA", ("cma.enabled=false",)),
    Row("cra_no_frontdoor", "CRA w/o visual front-door", ("eci.visual=false",)),
    Row("cra_no_backdoor", "CRA w/o linguistic back-door", ("eci.linguistic=false",)),
    Row(
        "tempclip_frames_read_q",
        "TempCLIP, frames read the question",
        ("model.variant=tempclip", "model.frames_read_question=true"),
    ),
    Row("blind", "Blind (text only)", ("model.variant=blind",)),
    Row(
        "cra_paper_weights",
        "CRA, paper loss weights (VQ 1, CMA 0.5)",
        ("train.question_discrimination_weight=1.0", "cma.weight=0.5"),
    ),
    Row(
        "tempclip_gt_pooling",
        "TempCLIP pooling the GT frames",
        ("model.variant=tempclip", "model.ground_truth_pooling=true"),
    ),
    Row("cra_oracle", "CRA, oracle features", (), "oracle"),
    Row("tempclip_oracle", "TempCLIP, oracle features", ("model.variant=tempclip",), "oracle"),
)
QUICK_ROWS = ("cra", "tempclip", "blind", "tempclip_gt_pooling")
RHOS = (0.0, 0.5, 0.9, 0.95)
QUICK_RHOS = (0.0, 0.9)  # 0.9 = params.yaml's own rho: that point is the ablation's cra/tempclip runs
SWEEP_ROWS = ("cra", "tempclip")
UPSTREAM = ("generate", "prepare", "visual_features", "text_features", "svo", "confounders")


def _stage(name: str, params_path: Path, overrides: list[str]) -> float:
    started = time.perf_counter()
    importlib.import_module(f"stages.{name}").run(load_params(params_path, overrides))
    return time.perf_counter() - started


def _run_paths(run_dir: Path) -> list[str]:
    return [
        f"paths.checkpoint={run_dir / 'model'}",
        f"paths.train_log={run_dir / 'dvclive'}",
        # a killed `cra report` resumes each run's training from its last complete epoch
        f"paths.train_resume={run_dir / 'resume'}",
        f"paths.predictions={run_dir / 'eval'}",
        f"paths.metrics={run_dir / 'metrics.json'}",
        f"paths.headline={run_dir / 'headline.json'}",
        f"paths.plots={run_dir / 'plots'}",  # not the workspace's DVC plots
    ]


def _data_paths(root: Path, params: Params) -> list[str]:
    """Every data path of `params` moved under `root` (a self-contained pipeline for the rho sweep)."""
    moved = {}
    for key in (
        "synthetic",
        "qa_table",
        "video_manifest",
        "visual_features",
        "text_features",
        "svo_graphs",
        "confounders",
    ):
        moved[key] = root / getattr(params.paths, key)
    return [f"paths.{k}={v}" for k, v in moved.items()] + [
        f"data.annotation_dir={moved['synthetic']}",
        f"data.video_root={moved['synthetic'] / 'videos'}",
    ]


def _per_question(params: Params, run_dir: Path) -> None:
    """`per_question.parquet` of a finished run (see pipeline.evaluation.ablation.per_question_table)."""
    from pipeline.data.synthetic.records import read_question_nuisances
    from pipeline.evaluation.ablation import per_question_table
    from pipeline.training.batches import read_qa_table

    predictions = pq.read_table(Path(params.paths.predictions) / "predictions.parquet")
    qa = read_qa_table(params).select(["split", "video_id", "qid", "segments"]).to_pydict()
    segments = {
        (s, v, q): seg for s, v, q, seg in zip(qa["split"], qa["video_id"], qa["qid"], qa["segments"], strict=True)
    }
    nuisances = None
    if params.data.dataset == "synthetic":
        nuisances = {
            (split, *key): record
            for split in params.data.eval_splits
            for key, record in read_question_nuisances(params.data.annotation_dir, split).items()
        }
    pq.write_table(per_question_table(predictions, segments, nuisances), run_dir / "per_question.parquet")


def run_one(params_path: Path, run_dir: Path, overrides: list[str], force: bool) -> dict[str, Any]:
    """Train and evaluate one run in `run_dir` unless it is already done; returns its timing record."""
    done = run_dir / "per_question.parquet"
    stamp = run_dir / "overrides.json"
    if not force and done.exists() and stamp.exists() and json.loads(stamp.read_text()) == overrides:
        log.info("%s: done already", run_dir)
        return json.loads((run_dir / "timing.json").read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    all_overrides = overrides + _run_paths(run_dir)
    timing = {"train_s": _stage("train", params_path, all_overrides)}
    timing["evaluate_s"] = _stage("evaluate", params_path, all_overrides)
    _per_question(load_params(params_path, all_overrides), run_dir)
    stamp.write_text(json.dumps(overrides))
    (run_dir / "timing.json").write_text(json.dumps(timing))
    return timing


def run_ablation(params_path: Path, work: Path, rows: list[Row], seeds: list[int], force: bool) -> dict[str, Any]:
    timings: dict[str, Any] = {}
    oracle = [
        f"paths.visual_features={work / 'oracle' / 'visual.parquet'}",
        f"paths.confounders={work / 'oracle' / 'confounders'}",
        "features.visual.model=oracle",
    ]
    if any(r.features == "oracle" for r in rows):
        if force or not (work / "oracle" / "confounders" / "visual.parquet").exists():
            timings["oracle_features_s"] = _stage("visual_features", params_path, oracle)
            timings["oracle_confounders_s"] = _stage("confounders", params_path, oracle)
    for row in rows:
        for seed in seeds:
            overrides = [*row.overrides, f"train.seed={seed}"] + (oracle if row.features == "oracle" else [])
            log.info("ablation %s, seed %d", row.id, seed)
            timings[f"{row.id}/seed{seed}"] = run_one(
                params_path, work / "ablation" / row.id / f"seed{seed}", overrides, force
            )
    return timings


def _params_rho(params: Params) -> float | None:
    """The params' own rho when visual and linguistic agree (that sweep point is the ablation's runs)."""
    visual, language = params.synthetic.rho_visual, params.synthetic.rho_language
    return visual if visual == language else None


def _sweep_folder(work: Path, rho: float, row_id: str, params_rho: float | None) -> Path:
    if params_rho is not None and rho == params_rho:
        return work / "ablation" / row_id
    return work / f"rho_{rho:g}" / row_id


def run_rho_sweep(params_path: Path, work: Path, rhos: list[float], seeds: list[int], force: bool) -> dict[str, Any]:
    base = load_params(params_path)
    timings: dict[str, Any] = {}
    for rho in rhos:
        if rho == _params_rho(base):
            # Same data and overrides as the ablation's cra / tempclip rows: train them there once.
            sweep_rows = [r for r in ROWS if r.id in SWEEP_ROWS]
            done = run_ablation(params_path, work, sweep_rows, seeds, force=False)
            timings.update({f"rho_{rho:g}/{key}": value for key, value in done.items()})
            continue
        root = work / f"rho_{rho:g}"
        shared = _data_paths(root, base) + [f"synthetic.rho_visual={rho}", f"synthetic.rho_language={rho}"]
        marker = root / "upstream.json"
        if force or not marker.exists():
            upstream = {stage: _stage(stage, params_path, shared) for stage in UPSTREAM}
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps(upstream))
        timings[f"rho_{rho:g}/upstream"] = json.loads(marker.read_text())
        for row_id in SWEEP_ROWS:
            row = next(r for r in ROWS if r.id == row_id)
            for seed in seeds:
                overrides = shared + [*row.overrides, f"train.seed={seed}"]
                log.info("rho %g: %s, seed %d", rho, row.id, seed)
                timings[f"rho_{rho:g}/{row.id}/seed{seed}"] = run_one(
                    params_path, root / row.id / f"seed{seed}", overrides, force
                )
    return timings


def collect(
    work: Path, rows: list[Row], seeds: list[int], rhos: list[float], resamples: int, params_rho: float | None = None
) -> dict[str, Any]:
    """The tables from the run folders that exist (a missing run is reported, not fatal)."""
    from pipeline.evaluation.ablation import load_run, summarise_row

    def runs_of(folder: Path) -> list:
        found = [folder / f"seed{s}" for s in seeds if (folder / f"seed{s}" / "per_question.parquet").exists()]
        return [load_run(run) for run in found]

    result: dict[str, Any] = {"seeds": seeds, "ablation": {}, "labels": {r.id: r.label for r in ROWS}, "rho_sweep": {}}
    missing = []
    for row in rows:
        runs = runs_of(work / "ablation" / row.id)
        if len(runs) < len(seeds):
            missing.append(f"ablation/{row.id}: {len(runs)} of {len(seeds)} seeds")
        if runs:
            result["ablation"][row.id] = summarise_row(runs, resamples=resamples) | {"n_seeds": len(runs)}
    for rho in rhos:
        for row_id in SWEEP_ROWS:
            runs = runs_of(_sweep_folder(work, rho, row_id, params_rho))
            if len(runs) < len(seeds):
                missing.append(f"rho_{rho:g}/{row_id}: {len(runs)} of {len(seeds)} seeds")
            if runs:
                result["rho_sweep"].setdefault(f"{rho:g}", {})[row_id] = summarise_row(runs, resamples=resamples) | {
                    "n_seeds": len(runs)
                }
    result["missing"] = missing
    return result


def plot_rho_sweep(sweep: dict[str, Any], labels: dict[str, str], path: Path) -> None:
    """test_ood Acc@QA and Acc@GQA against rho, one line per model, error bars = seed std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rhos = sorted(sweep, key=float)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric, title in zip(
        axes, ("acc_qa", "acc_gqa"), ("test_ood Acc@QA", "test_ood Acc@GQA (post-hoc)"), strict=True
    ):
        for row_id in SWEEP_ROWS:
            points = [(float(r), sweep[r][row_id]["test_ood"][metric]) for r in rhos if row_id in sweep[r]]
            if not points:
                continue
            x = [p[0] for p in points]
            ax.errorbar(
                x,
                [p[1]["mean"] for p in points],
                yerr=[p[1]["std"] for p in points],
                marker="o",
                capsize=3,
                label=labels.get(row_id, row_id),
            )
        ax.axhline(
            20.0 if metric == "acc_qa" else 0.0,
            color="grey",
            lw=0.8,
            ls=":",
            label="chance" if metric == "acc_qa" else None,
        )
        ax.set_xlabel("rho (planted correlation strength in training)")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(result: dict[str, Any], timings: dict[str, Any] | None, out: Path, mode: str, seconds: float) -> None:
    """`timings` None: the tables were collected from finished runs (`--collect-only`)."""
    from pipeline.evaluation.ablation import format_table

    out.mkdir(parents=True, exist_ok=True)
    labels = result["labels"]
    payload = {**result, "mode": mode, "wall_seconds": round(seconds, 1), "timings": timings}
    (out / "ablation.json").write_text(
        json.dumps({k: v for k, v in payload.items() if k != "rho_sweep"}, indent=2) + "\n"
    )
    (out / "rho_sweep.json").write_text(
        json.dumps({"mode": mode, "seeds": result["seeds"], "rho_sweep": result["rho_sweep"]}, indent=2) + "\n"
    )
    lines = [
        "# Ablation on the synthetic benchmark (generated by `cra report`)",
        "",
        f"Mode `{mode}`: seeds {result['seeds']}; "
        + (
            "collected from finished runs (`--collect-only`; their times are in each run's timing.json)."
            if timings is None
            else f"this run of the study took {seconds / 60:.0f} min (runs already done were reused and are not "
            "in that time; per-run times are in ablation.json)."
        ),
        "Cells: mean ± std over seeds (train.seed); the last two columns: 95 % interval by bootstrap over test",
        "videos of the seeds' pooled predictions. Grounding columns: the post-hoc rule. `mass`: attention on the",
        "ground-truth frames relative to their share (1 = none). `short.V` / `short.L`: share of predictions whose",
        "option has the kind paired with the visual / linguistic nuisance (1/5 when a model ignores it, on test_ood).",
        "",
    ]
    for split in ("test_iid", "test_ood"):
        lines += [f"## {split}", "", *format_table(result["ablation"], labels, split), ""]
    if result["missing"]:
        lines += ["Missing runs: " + "; ".join(result["missing"]), ""]
    (out / "ablation.md").write_text("\n".join(lines))
    if result["rho_sweep"]:
        plot_rho_sweep(result["rho_sweep"], labels, out / "rho_sweep.png")


def main(
    params_path: Path,
    work: Path,
    out: Path,
    seeds: list[int] | None,
    quick: bool,
    collect_only: bool,
    force: bool,
    resamples: int,
    row_ids: list[str] | None = None,
    rhos: list[float] | None = None,
) -> dict[str, Any]:
    """`row_ids` / `rhos` pick a subset (e.g. to split the study over processes; `rhos=[]`: no sweep)."""
    known = {r.id for r in ROWS}
    unknown = sorted(set(row_ids or ()) - known)
    if unknown:
        raise PipelineError(f"cra report: unknown row(s) {unknown}; the rows are {sorted(known)}")
    mode = "custom" if row_ids is not None or rhos is not None else ("quick" if quick else "full")
    seeds = seeds or ([0] if quick else [0, 1, 2])
    default_rows = QUICK_ROWS if quick else known
    rows = [r for r in ROWS if r.id in (row_ids if row_ids is not None else default_rows)]
    rhos = list(rhos if rhos is not None else (QUICK_RHOS if quick else RHOS))
    started = time.perf_counter()
    timings: dict[str, Any] = {}
    if not collect_only:
        if not Path(load_params(params_path).paths.visual_features).exists():
            raise PipelineError(
                "cra report trains on the default pipeline's features: run `make repro` (or `dvc repro`) first"
            )
        timings["ablation"] = run_ablation(params_path, work, rows, seeds, force)
        timings["rho_sweep"] = run_rho_sweep(params_path, work, rhos, seeds, force)
    result = collect(work, rows, seeds, rhos, resamples, _params_rho(load_params(params_path)))
    seconds = time.perf_counter() - started
    write_report(result, None if collect_only else timings, out, mode, seconds)
    log.info("study written to %s (%.0f min)", out, seconds / 60)
    return result
