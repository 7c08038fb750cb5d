"""Linear probe: do the visual features recognise the synthetic benchmark's per-frame classes?

    python -m benchmarks.linear_probe [--features PATH] [--synthetic DIR] [--json] [--c-grid 0.1 1 10]

Every sampled frame (video v, t = timestamps[v, i]) is labelled from the generator's own timeline
(`events_{split}.json`, read back as the renderer's scene states: frame j = rint(t * fps) shows an
event or a cue when start_ds * fps <= 10 j < end_ds * fps), for these tasks:
  - `slot_<colour>`, one per object colour (every video has one object of each): `absent` (off
    screen) or its state, one of vocabulary.STATES (7 classes). An object is named by its colour, so
    this is what a question about it needs read from the frame;
  - `event`: the kind of the event under way (events happen one at a time), or `none` (6 classes);
  - `cue_shown`: whether a backdrop cue (the visual nuisance) is on screen (yes/no).
A standardised multinomial LogisticRegression per task is fitted on the frames of the train-split
videos (C = 1 by default; with several `--c-grid` values, the one with the best balanced accuracy
on the val videos, which costs one extra fit per value: ~4x the time on a shared CPU) and
scored on the frames of test_iid + test_ood (video-disjoint): accuracy, balanced accuracy (mean
per-class recall), the majority-class baseline (the train majority, predicted everywhere), chance
(1 / classes) and per-class recall. A task is "well above chance" when its balanced accuracy closes
at least half of the gap from chance to 1.

Shape notation: N videos, T frames per video, D feature width, F = N * T frames.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.data.synthetic.records import script_from_record
from pipeline.data.synthetic.render import scene_states
from pipeline.data.synthetic.timeline import VideoScript
from pipeline.data.synthetic.vocabulary import COLOURS, KIND_NAMES, STATES
from pipeline.errors import PipelineError

SLOT_CLASSES = ("absent", *STATES)
TASKS: dict[str, tuple[str, ...]] = {
    **{f"slot_{colour}": SLOT_CLASSES for colour in COLOURS},
    "event": ("none", *KIND_NAMES),
    "cue_shown": ("no", "yes"),
}
TRAIN_SPLITS = ("train",)
SELECT_SPLITS = ("val",)
TEST_SPLITS = ("test_iid", "test_ood")
WELL_ABOVE = 0.5  # fraction of the chance -> 1 gap the balanced accuracy must close


def script_labels(script: VideoScript, t: float) -> dict[str, str]:
    """Every task's label of the frame shown at `t` seconds of a video."""
    frame = min(max(int(np.rint(t * script.fps)), 0), script.frame_count - 1)
    tick = 10 * frame
    cells = scene_states(script, np.array([tick]))[0]
    labels = {f"slot_{obj.colour}": cell.state for obj, cell in zip(script.objects, cells, strict=True)}
    active = [e.kind for e in script.events if e.start_ds * script.fps <= tick < e.end_ds * script.fps]
    labels["event"] = active[0] if active else "none"
    labels["cue_shown"] = "yes" if any(cell.cue is not None for cell in cells) else "no"
    return labels


def frame_labels(record: dict, t: float) -> dict[str, str]:
    """Every task's label of the frame shown at `t` seconds of the video `record` (an `events_{split}.json` entry)."""
    return script_labels(script_from_record(record), t)


def label_frames(records: dict[str, dict], video_ids: list[str], timestamps: np.ndarray) -> dict[str, np.ndarray]:
    """Per task, the (F,) labels of the frames of `video_ids` (timestamps (N, T)), video-major."""
    rows = []
    for vid, times in zip(video_ids, timestamps, strict=True):
        script = script_from_record(records[vid])
        rows += [script_labels(script, float(t)) for t in times]
    return {task: np.array([row[task] for row in rows]) for task in TASKS}


@dataclass(frozen=True)
class ProbeResult:
    classes: list[str]
    n_train: int
    n_test: int
    C: float
    accuracy: float
    balanced_accuracy: float
    majority_class: str
    majority_accuracy: float
    chance: float
    recall: dict[str, float | None]  # per class; None when the class has no test frame
    accuracy_by_group: dict[str, float]  # per value of `groups` (e.g. the test split)
    confusion: list[list[int]]  # [true class][predicted class], in `classes` order
    well_above_chance: bool


def _fit(x: np.ndarray, y: np.ndarray, C: float, max_iter: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # newton-cholesky: random-init CLIP features are nearly low-rank (5 directions hold 90 % of the
    # variance, condition number ~1e7 after standardising), where lbfgs needs ~25x the time.
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, solver="newton-cholesky", max_iter=max_iter))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            model.fit(x, y)
        except ConvergenceWarning:
            raise PipelineError(
                f"linear probe: LogisticRegression (C={C}) did not converge in {max_iter} iterations; raise --max-iter"
            ) from None
    return model


def _recalls(y: np.ndarray, pred: np.ndarray, classes: tuple[str, ...]) -> dict[str, float | None]:
    return {c: (float(np.mean(pred[y == c] == c)) if np.any(y == c) else None) for c in classes}


def _balanced(recall: dict[str, float | None]) -> float:
    present = [r for r in recall.values() if r is not None]
    return float(np.mean(present))


def probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: tuple[str, ...],
    c_grid: tuple[float, ...] = (1.0,),
    select: tuple[np.ndarray, np.ndarray] | None = None,
    max_iter: int = 2000,
    groups: np.ndarray | None = None,
) -> ProbeResult:
    """Fit on (x_train (F, D), y_train (F,)), score on the test frames (`groups` (F,): also report the
    accuracy per group). With several values in `c_grid`, C is the one with the best balanced
    accuracy on `select` = (x, y) (the first on ties)."""
    if len(set(y_train.tolist())) < 2:
        raise PipelineError(f"linear probe: the train frames hold one class only ({y_train[0]!r}); nothing to fit")
    C = c_grid[0]
    if len(c_grid) > 1:
        if select is None:
            raise ValueError("several values in c_grid need a `select` set")
        scores = [
            _balanced(_recalls(select[1], _fit(x_train, y_train, c, max_iter).predict(select[0]), classes))
            for c in c_grid
        ]
        C = c_grid[int(np.argmax(scores))]
    pred = _fit(x_train, y_train, C, max_iter).predict(x_test)
    recall = _recalls(y_test, pred, classes)
    values, counts = np.unique(y_train, return_counts=True)
    majority = str(values[np.argmax(counts)])
    chance = 1.0 / len(classes)
    balanced = _balanced(recall)
    by_group = (
        {}
        if groups is None
        else {str(g): float(np.mean(pred[groups == g] == y_test[groups == g])) for g in dict.fromkeys(groups.tolist())}
    )
    return ProbeResult(
        classes=list(classes),
        n_train=len(y_train),
        n_test=len(y_test),
        C=float(C),
        accuracy=float(np.mean(pred == y_test)),
        balanced_accuracy=balanced,
        majority_class=majority,
        majority_accuracy=float(np.mean(y_test == majority)),
        chance=chance,
        recall=recall,
        accuracy_by_group=by_group,
        confusion=[[int(np.sum((y_test == t) & (pred == p))) for p in classes] for t in classes],
        well_above_chance=balanced >= chance + WELL_ABOVE * (1.0 - chance),
    )


def load_records(synthetic_dir: Path, splits: tuple[str, ...]) -> dict[str, dict]:
    """video_id -> timeline record, from `events_{split}.json` of every split in `splits`."""
    records: dict[str, dict] = {}
    for split in splits:
        path = synthetic_dir / f"events_{split}.json"
        if not path.exists():
            raise PipelineError(
                f"linear probe: {path} not found; the probe needs the synthetic benchmark's timelines "
                "(run `dvc repro generate`, or pass --synthetic DIR)"
            )
        records.update({vid: {**rec, "split": split} for vid, rec in json.loads(path.read_text()).items()})
    return records


def run_probe(features_path: Path, synthetic_dir: Path, c_grid: tuple[float, ...], max_iter: int) -> dict:
    """Every task's ProbeResult (as dicts) on the artifacts, plus what they were made from."""
    from pipeline.artifacts.visual_features import read_visual_features

    visual = read_visual_features(features_path, expected=None)
    records = load_records(synthetic_dir, TRAIN_SPLITS + SELECT_SPLITS + TEST_SPLITS)

    def frames(splits: tuple[str, ...]):
        ids = [vid for vid in visual.video_ids if vid in records and records[vid]["split"] in splits]
        x = visual.select(ids).astype(np.float64)  # (N, T, D)
        N, T, D = x.shape
        split_of_frame = np.repeat([records[vid]["split"] for vid in ids], T)  # (F,)
        return x.reshape(N * T, D), label_frames(records, ids, visual.timestamps[visual.rows(ids)]), split_of_frame

    x_train, y_train, _ = frames(TRAIN_SPLITS)
    x_select, y_select, _ = frames(SELECT_SPLITS)
    x_test, y_test, test_split = frames(TEST_SPLITS)
    if not len(x_train) or not len(x_test):
        raise PipelineError(
            f"linear probe: {features_path} holds no frames of the train or test videos of {synthetic_dir}"
        )
    tasks = {
        task: asdict(
            probe(
                x_train,
                y_train[task],
                x_test,
                y_test[task],
                classes,
                c_grid,
                (x_select, y_select[task]) if len(x_select) else None,
                max_iter,
                test_split,
            )
        )
        for task, classes in TASKS.items()
    }
    meta = visual.metadata
    return {
        "features": str(features_path),
        "model": meta.get("model"),
        "pretrained": meta.get("pretrained"),
        "dim": meta.get("dim"),
        "num_frames": meta.get("num_frames"),
        "train_splits": list(TRAIN_SPLITS),
        "select_splits": list(SELECT_SPLITS),
        "c_grid": list(c_grid),
        "test_splits": list(TEST_SPLITS),
        "well_above_rule": f"balanced_accuracy >= chance + {WELL_ABOVE} * (1 - chance)",
        "tasks": tasks,
    }


def format_table(report: dict) -> str:
    """The report as a fixed-width table, then each task's per-class recall."""
    lines = [
        f"# linear probe of {report['features']} ({report['model']}, pretrained={report['pretrained']}, "
        f"D={report['dim']}, T={report['num_frames']}): fit on {'+'.join(report['train_splits'])}, "
        + (f"C by {'+'.join(report['select_splits'])} among {report['c_grid']}, " if len(report["c_grid"]) > 1 else "")
        + f"test on {'+'.join(report['test_splits'])}",
        f"# well above chance: {report['well_above_rule']}",
        "",
    ]
    splits = report["test_splits"]
    header = f"{'task':<14}{'K':>3}{'n_test':>8}{'C':>7}{'acc':>7}{'bal_acc':>9}{'majority':>10}{'chance':>8}"
    header += "".join(f"{'acc ' + s:>14}" for s in splits) + "  well above chance"
    lines += [header, "-" * len(header)]
    for task, r in report["tasks"].items():
        row = (
            f"{task:<14}{len(r['classes']):>3}{r['n_test']:>8}{r['C']:>7g}{r['accuracy']:>7.3f}"
            f"{r['balanced_accuracy']:>9.3f}{r['majority_accuracy']:>10.3f}{r['chance']:>8.3f}"
        )
        row += "".join(f"{r['accuracy_by_group'].get(s, float('nan')):>14.3f}" for s in splits)
        lines.append(row + ("  yes" if r["well_above_chance"] else "  NO"))
    lines += ["", "per-class recall (test frames of the class):"]
    for task, r in report["tasks"].items():
        cells = [f"{c} {'-' if v is None else f'{v:.2f}'}" for c, v in r["recall"].items()]
        lines.append(f"  {task:<14}" + "  ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.linear_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="where the default paths come from")
    parser.add_argument("--features", help="visual-feature Parquet file (default: paths.visual_features)")
    parser.add_argument("--synthetic", help="synthetic benchmark folder with events_*.json (default: paths.synthetic)")
    parser.add_argument(
        "--c-grid",
        type=float,
        nargs="+",
        default=[1.0],
        help="inverse regularisation strength(s); several: picked on the val videos",
    )
    parser.add_argument("--max-iter", type=int, default=200, help="Newton iterations (it needs ~10)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    args = parser.parse_args(argv)
    try:
        if args.features is None or args.synthetic is None:
            from pipeline.config import load_params

            paths = load_params(args.params).paths
        features = Path(args.features or paths.visual_features)
        synthetic = Path(args.synthetic or paths.synthetic)
        report = run_probe(features, synthetic, tuple(args.c_grid), args.max_iter)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(report, indent=2) if args.json else format_table(report))


if __name__ == "__main__":
    main()
