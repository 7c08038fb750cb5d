"""The learnability gate: is grounding learnable on the synthetic benchmark with no planted shortcut?

    python -m benchmarks.learnability [--work DIR] [--features default oracle] [--variants tempclip cra]
                                      [--seeds 0] [--set key=value ...] [--json]

Runs the pipeline's own stages (generate -> ... -> train -> evaluate) in `--work` (default: a temporary
folder) from the repository's params.yaml with `synthetic.rho_visual = synthetic.rho_language = 0`
(every nuisance independent of the answer, so nothing but the evidence answers a question), once per
visual feature backend (`default`: the params' open_clip encoder; `oracle`: the generator's scene state)
and per model variant, and prints, per run and evaluation split:

  Acc@QA, post-hoc mIoP, the whole-video span's mIoP and their ratio, and the attention mass on the
  ground-truth frames (1.0 = no grounding).

A run PASSES when, on every evaluation split, Acc@QA >= 60 % (chance 20 %), post-hoc mIoP >= 1.5x the
whole-video span's, and attention mass >= 2.0. The gate passes when every variant passes on a backend.
It is a benchmark, not a test: it takes minutes (about 4 for the default features' stages, then 1-2
per variant on 2 CPU cores) and its numbers depend on the machine only through float rounding.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
GATE = {"acc_qa": 60.0, "miop_ratio": 1.5, "attention_mass": 2.0}
NO_SHORTCUT = ["synthetic.rho_visual=0", "synthetic.rho_language=0"]
UPSTREAM = ("generate", "prepare", "text_features", "svo")


def _params_file(work: Path, backend: str) -> Path:
    """The repository's params.yaml with every path moved under `work` (features per backend)."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    paths = params["paths"]
    shared = work / "shared"
    per_backend = work / backend
    for key, value in paths.items():
        if key == "python":
            continue
        shared_path = key in ("synthetic", "qa_table", "video_manifest", "text_features", "svo_graphs")
        paths[key] = str((shared if shared_path else per_backend) / value)
    params["data"]["annotation_dir"] = paths["synthetic"]
    params["data"]["video_root"] = str(Path(paths["synthetic"]) / "videos")
    if backend == "oracle":
        params["features"]["visual"]["model"] = "oracle"
    path = work / f"params_{backend}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _run(stage: str, params_file: Path, overrides: list[str]) -> float:
    from pipeline.config import load_params

    started = time.perf_counter()
    __import__(f"stages.{stage}", fromlist=["run"]).run(load_params(params_file, overrides))
    return time.perf_counter() - started


def _verdict(split_metrics: dict[str, Any]) -> dict[str, Any]:
    posthoc = split_metrics.get("posthoc", {})
    whole = split_metrics.get("reference_whole", {})
    ratio = posthoc.get("miop", float("nan")) / max(whole.get("miop", float("nan")), 1e-9)
    row = {
        "acc_qa": split_metrics["acc_qa"],
        "miop": posthoc.get("miop"),
        "whole_miop": whole.get("miop"),
        "miop_ratio": round(ratio, 3),
        "attention_mass": split_metrics.get("attention_mass"),
    }
    row["pass"] = bool(
        row["acc_qa"] >= GATE["acc_qa"]
        and ratio >= GATE["miop_ratio"]
        and (row["attention_mass"] or 0.0) >= GATE["attention_mass"]
    )
    return row


def run_gate(work: Path, backends: list[str], variants: list[str], seeds: list[int], extra: list[str]) -> dict:
    results: dict[str, Any] = {"gate": GATE, "runs": []}
    overrides = NO_SHORTCUT + extra
    for backend in backends:
        params_file = _params_file(work, backend)
        timings = {}
        for stage in UPSTREAM:
            if backend == backends[0]:  # the benchmark, its text features and graphs are shared
                timings[stage] = _run(stage, params_file, overrides)
        for stage in ("visual_features", "confounders"):
            timings[stage] = _run(stage, params_file, overrides)
        for variant in variants:
            for seed in seeds:
                run_overrides = overrides + [f"model.variant={variant}", f"train.seed={seed}"]
                train_s = _run("train", params_file, run_overrides)
                _run("evaluate", params_file, run_overrides)
                from pipeline.config import load_params

                metrics_path = Path(load_params(params_file, run_overrides).paths.metrics)
                metrics = json.loads(metrics_path.read_text())
                splits = {k: _verdict(v) for k, v in metrics.items() if isinstance(v, dict) and "acc_qa" in v}
                results["runs"].append(
                    {
                        "features": backend,
                        "variant": variant,
                        "seed": seed,
                        "train_s": round(train_s, 1),
                        "selected_epoch": metrics.get("checkpoint", {}).get("epoch"),
                        "splits": splits,
                        "pass": all(s["pass"] for s in splits.values()),
                    }
                )
        results.setdefault("stage_seconds", {})[backend] = {k: round(v, 1) for k, v in timings.items()}
    for backend in backends:
        runs = [r for r in results["runs"] if r["features"] == backend]
        results.setdefault("passes", {})[backend] = bool(runs) and all(r["pass"] for r in runs)
    return results


def print_table(results: dict) -> None:
    gate = results["gate"]
    print(
        f"gate: Acc@QA >= {gate['acc_qa']:.0f} %, post-hoc mIoP >= {gate['miop_ratio']}x the whole video's, "
        f"attention mass >= {gate['attention_mass']} on every split (rho_visual = rho_language = 0)"
    )
    header = f"{'features':9} {'variant':9} {'seed':>4} {'split':9} {'Acc@QA':>7} {'mIoP':>6} {'whole':>6} "
    print(header + f"{'ratio':>6} {'mass':>5}  verdict")
    for run in results["runs"]:
        for split, row in run["splits"].items():
            print(
                f"{run['features']:9} {run['variant']:9} {run['seed']:>4} {split:9} {row['acc_qa']:7.1f} "
                f"{row['miop']:6.1f} {row['whole_miop']:6.1f} {row['miop_ratio']:6.2f} "
                f"{row['attention_mass'] or float('nan'):5.2f}  {'pass' if row['pass'] else 'FAIL'}"
            )
    for backend, ok in results["passes"].items():
        print(f"gate on {backend} features: {'PASS' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--features", nargs="+", default=["default", "oracle"], choices=["default", "oracle"])
    parser.add_argument("--variants", nargs="+", default=["tempclip", "cra"], choices=["tempclip", "cra"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra param override key=value")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cra-learnability-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        results = run_gate(work, args.features, args.variants, args.seeds, args.extra)
        results["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)
        print(f"wall time {results['seconds']:.0f} s")
    return 0 if all(results["passes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
