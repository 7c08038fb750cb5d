"""NExT-GQA's official scoring, its JSON result files, and a readable report.

The metrics reproduce doc-doc/NExT-GQA `code/TempCLIP/eval_ground.py` (`get_tIoU`, `eval_ground`;
CRA-GQA's `utils/stat/metrics.py` `Metric` is the same code):

- For each question of the grounding labels (gsub) that has a predicted span [s, e] in seconds,
  IoU and IoP (intersection over the *predicted* span) against every labelled segment; the maximum
  IoU and the maximum IoP are taken independently (possibly from different segments), starting
  from 0, so a span that misses every segment scores 0 (the official raw overlap is negative there).
- A zero-length span [s, s] has IoU 0 and IoP 1 when s lies in a segment (ends included), else 0.
- mIoU / mIoP are the means; IoU@k / IoP@k the fractions with max >= k.
- Acc@GQA: answered correctly AND max IoP >= 0.5.
- Denominator: the questions of gsub that the span file has (the official `cnt`: questions without
  a span are skipped, predictions without a label are ignored). With the span file for a whole
  split, that is every question of gsub, as in the paper.
- Acc@QA over the same questions. The official Acc@QA (`eval_next.py`, `eval_ground`) counts the
  questions of `{split}.csv` that gsub labels; for a complete span file the two sets are equal.
- Everything in percent, each sum taken in gsub's order, as the official loop does.

Result files (the official formats): spans `{"<video_id>_<qid>": [start_s, end_s]}`; per-frame
weights `{"<video_id>_<qid>": [w_1 .. w_T]}` grounded by the post-hoc rule at the timestamps of
`frame2time_{split}.json` (`{video_id: [t_1 .. t_T]}`); QA results
`{"<video_id>_<qid>": {"answer": a, "prediction": p}}`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from models.grounding import is_span, posthoc_span
from pipeline.artifacts.schemas import official_key
from pipeline.errors import PipelineError
from pipeline.runtime import temp_path

Span = tuple[float, float]

GROUNDING_METRICS: tuple[str, ...] = ("miop", "iop@0.3", "iop@0.5", "miou", "iou@0.3", "iou@0.5")
QA_METRICS: tuple[str, ...] = ("acc_qa", "acc_gqa")
METRIC_LABELS: dict[str, str] = {
    "acc_qa": "Acc@QA",
    "acc_gqa": "Acc@GQA",
    "miop": "mIoP",
    "iop@0.3": "IoP@0.3",
    "iop@0.5": "IoP@0.5",
    "miou": "mIoU",
    "iou@0.3": "IoU@0.3",
    "iou@0.5": "IoU@0.5",
}
GQA_IOP_THRESHOLD = 0.5


class ScoringError(PipelineError):
    """A result or label file that cannot be scored: missing, malformed, or about other questions."""


# ---------------------------------------------------------------------------------------------
# Overlap of one span with the labelled segments


def segment_overlap(span: Sequence[float], segment: Sequence[float]) -> Span:
    """(IoU, IoP) of a predicted span with one labelled segment, as the official `get_tIoU`.

    Unlike the official function, a span that misses the segment gives 0, not a negative ratio;
    `best_overlap` starts its maxima at 0, so the scores are the same.
    """
    start, end = span[0], span[1]
    seg_start, seg_end = segment[0], segment[1]
    if start == end:
        return 0.0, 1.0 if seg_start <= start <= seg_end else 0.0
    intersection = min(seg_end, end) - max(seg_start, start)
    if intersection <= 0:
        return 0.0, 0.0
    union = max(seg_end, end) - min(seg_start, start)
    return intersection / union, intersection / (end - start)


def best_overlap(span: Sequence[float], segments: Sequence[Sequence[float]]) -> Span:
    """(max IoU, max IoP) over a question's segments, each maximum taken on its own; (0, 0) without segments."""
    best_iou = best_iop = 0.0
    for segment in segments:
        iou, iop = segment_overlap(span, segment)
        best_iou, best_iop = max(best_iou, iou), max(best_iop, iop)
    return best_iou, best_iop


def labelled_questions(gsub: Mapping[str, Any]) -> dict[str, list[list[float]]]:
    """`{"<video_id>_<qid>": segments}` of a gsub mapping, in the file's order."""
    return {
        official_key(video_id, qid): segments
        for video_id, video in gsub.items()
        for qid, segments in video["location"].items()
    }


# ---------------------------------------------------------------------------------------------
# Scoring


def _metrics(overlaps: list[Span], correct: list[bool] | None) -> dict[str, float]:
    count = len(overlaps)
    metrics: dict[str, float] = {}
    if correct is not None:
        metrics["acc_qa"] = sum(correct) / count * 100
        metrics["acc_gqa"] = (
            sum(ok and iop >= GQA_IOP_THRESHOLD for ok, (_, iop) in zip(correct, overlaps, strict=True)) / count * 100
        )
    for name, index in (("iop", 1), ("iou", 0)):
        values = [overlap[index] for overlap in overlaps]
        metrics[f"m{name}"] = sum(values) / count * 100
        metrics[f"{name}@0.3"] = sum(value >= 0.3 for value in values) / count * 100
        metrics[f"{name}@0.5"] = sum(value >= 0.5 for value in values) / count * 100
    return metrics


def _require_overlap(predicted: Sequence[str], labelled: Mapping[str, Any], names: Mapping[str, str]) -> None:
    """Refuse predictions of which no key is a labelled question: wrong key format, or another split."""
    if any(key in labelled for key in predicted):
        return
    example = next(iter(predicted), None)
    labelled_example = next(iter(labelled), None)
    expected = f"'<video_id>_<qid>' (e.g. '{labelled_example}')" if labelled_example else "'<video_id>_<qid>'"
    if example is None:
        raise ScoringError(f"{names['spans']} has no question")
    if "_" not in example:
        raise ScoringError(f"{names['spans']}: keys must look like {expected}, got '{example}'")
    raise ScoringError(
        f"{names['spans']}: none of its {len(predicted)} keys (e.g. '{example}') is a question of {names['gsub']} "
        f"(e.g. '{labelled_example}'); are both files from the same split?"
    )


def _score(
    gsub: Mapping[str, Any],
    spans: Mapping[str, Sequence[float]],
    qa: Mapping[str, Mapping[str, Any]] | None,
    types: Mapping[str, str] | None,
    names: Mapping[str, str],
) -> dict[str, Any]:
    labelled = labelled_questions(gsub)
    _require_overlap(list(spans), labelled, names)
    keys = [key for key in labelled if key in spans]
    overlaps = [best_overlap(spans[key], labelled[key]) for key in keys]

    correct = None
    if qa is not None:
        missing = [key for key in keys if key not in qa]
        if missing:
            raise ScoringError(
                f"{names['qa']} has no answer for {len(missing)} of the {len(keys)} scored questions "
                f"(e.g. '{missing[0]}'); it must cover every question that has a span"
            )
        correct = [qa[key]["answer"] == qa[key]["prediction"] for key in keys]

    result: dict[str, Any] = {
        "overall": _metrics(overlaps, correct),
        "n": len(keys),
        "n_labelled": len(labelled),
        "n_ignored": sum(key not in labelled for key in spans),
    }
    if types is not None:
        untyped = [key for key in keys if key not in types]
        if untyped:
            raise ScoringError(f"no question type for {len(untyped)} scored questions (e.g. '{untyped[0]}')")
        rows_by_type: dict[str, list[int]] = {}
        for row, key in enumerate(keys):
            rows_by_type.setdefault(types[key], []).append(row)
        result["by_type"] = {
            qtype: _metrics([overlaps[r] for r in rows], None if correct is None else [correct[r] for r in rows])
            for qtype, rows in sorted(rows_by_type.items())
        }
        result["n_by_type"] = {qtype: len(rows) for qtype, rows in sorted(rows_by_type.items())}
    return result


def score(
    gsub: Mapping[str, Any],
    spans: Mapping[str, Sequence[float]],
    qa: Mapping[str, Mapping[str, Any]] | None = None,
    types: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Score spans (seconds) against gsub labels, as NExT-GQA's official evaluation.

    gsub: `{video_id: {"location": {qid: [[start_s, end_s], ...]}, ...}}`; spans and qa are keyed
    `"<video_id>_<qid>"`; types maps the same keys to a question type (e.g. CW/CH/TN/TC/TP, kept
    as given; the official QA breakdown folds TP into TN).

    Returns `{"overall": metrics, "n": scored questions, "n_labelled": questions in gsub,
    "n_ignored": spans without a label}` and, with types, `"by_type": {type: metrics}` and
    `"n_by_type"`. Metrics (percent): `acc_qa`, `acc_gqa` (with qa only), `miop`, `iop@0.3`,
    `iop@0.5`, `miou`, `iou@0.3`, `iou@0.5`.
    """
    names = {"gsub": "the grounding labels", "spans": "the predicted spans", "qa": "the QA results"}
    return _score(gsub, spans, qa, types, names)


# ---------------------------------------------------------------------------------------------
# Official JSON files


def _load_json(path: Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ScoringError(f"{path} does not exist ({what})")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise ScoringError(f"{path} is not valid JSON ({what}): {err}") from None
    except UnicodeDecodeError:
        raise ScoringError(f"{path} is not UTF-8 text ({what})") from None


def _require_mapping(data: Any, path: Path, expected: str) -> Mapping[str, Any]:
    if not isinstance(data, dict) or not data:
        raise ScoringError(f"{path}: expected a non-empty JSON object {expected}")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_gsub(path: str | Path) -> dict[str, Any]:
    """Grounding labels `{video_id: {"duration": s, "location": {qid: [[start_s, end_s], ...]}}}`."""
    path = Path(path)
    expected = '{video_id: {"location": {qid: [[start_s, end_s], ...]}, ...}}'
    gsub = _require_mapping(_load_json(path, "grounding labels"), path, expected)
    for video_id, video in gsub.items():
        location = video.get("location") if isinstance(video, dict) else None
        if not isinstance(location, dict):
            raise ScoringError(f"{path}: video '{video_id}' has no `location` object; expected {expected}")
        for qid, segments in location.items():
            if not (isinstance(segments, list) and all(is_span(segment) for segment in segments)):
                raise ScoringError(
                    f"{path}: question '{official_key(video_id, qid)}' has segments {segments!r}; "
                    "expected a list of [start_s, end_s] with start_s <= end_s"
                )
    return gsub


def read_spans(path: str | Path) -> dict[str, Span]:
    """Predicted spans `{"<video_id>_<qid>": [start_s, end_s]}` (seconds, start <= end)."""
    path = Path(path)
    spans = _require_mapping(_load_json(path, "predicted spans"), path, '{"<video_id>_<qid>": [start_s, end_s]}')
    for key, span in spans.items():
        if not (isinstance(span, list) and is_span(span)):
            raise ScoringError(f"{path}: '{key}' has {span!r}; expected [start_s, end_s], finite, start_s <= end_s")
    return {key: (float(span[0]), float(span[1])) for key, span in spans.items()}


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Per-frame weights `{"<video_id>_<qid>": [w_1 .. w_T]}`."""
    path = Path(path)
    weights = _require_mapping(_load_json(path, "per-frame weights"), path, '{"<video_id>_<qid>": [w_1, ..., w_T]}')
    for key, curve in weights.items():
        if not (isinstance(curve, list) and curve and all(map(_is_number, curve))):
            raise ScoringError(f"{path}: '{key}' must be a non-empty list of finite numbers (one weight per frame)")
    return {key: np.asarray(curve, dtype=np.float64) for key, curve in weights.items()}


def read_frame2time(path: str | Path) -> dict[str, np.ndarray]:
    """Frame timestamps `{video_id: [t_1 .. t_T]}` (seconds, ascending)."""
    path = Path(path)
    frame2time = _require_mapping(_load_json(path, "frame timestamps"), path, "{video_id: [t_1, ..., t_T]}")
    for video_id, stamps in frame2time.items():
        if not (isinstance(stamps, list) and stamps and all(map(_is_number, stamps))):
            raise ScoringError(f"{path}: video '{video_id}' must map to a non-empty list of timestamps in seconds")
        if any(later < earlier for earlier, later in pairwise(stamps)):
            raise ScoringError(f"{path}: the timestamps of video '{video_id}' are not in ascending order")
    return {video_id: np.asarray(stamps, dtype=np.float64) for video_id, stamps in frame2time.items()}


def read_qa(path: str | Path) -> dict[str, dict[str, Any]]:
    """QA results `{"<video_id>_<qid>": {"answer": a, "prediction": p}}`."""
    path = Path(path)
    qa = _require_mapping(_load_json(path, "QA results"), path, '{"<video_id>_<qid>": {"answer": a, "prediction": p}}')
    for key, row in qa.items():
        if not (isinstance(row, dict) and "answer" in row and "prediction" in row):
            raise ScoringError(f'{path}: \'{key}\' has {row!r}; expected {{"answer": a, "prediction": p}}')
    return qa


def posthoc_spans(
    gsub: Mapping[str, Any],
    weights: Mapping[str, np.ndarray],
    frame2time: Mapping[str, np.ndarray],
    names: Mapping[str, str] | None = None,
) -> dict[str, Span]:
    """Post-hoc spans of the labelled questions that have weights, at their video's timestamps."""
    names = names or {"weights": "the weights", "frame2time": "the frame timestamps"}
    spans = {}
    for video_id, video in gsub.items():
        for qid in video["location"]:
            key = official_key(video_id, qid)
            if key not in weights:
                continue
            if video_id not in frame2time:
                raise ScoringError(f"{names['frame2time']} has no timestamps for video '{video_id}' (question '{key}')")
            if weights[key].shape != frame2time[video_id].shape:
                raise ScoringError(
                    f"{names['weights']}: '{key}' has {weights[key].shape[0]} weights but {names['frame2time']} "
                    f"has {frame2time[video_id].shape[0]} timestamps for video '{video_id}'"
                )
            spans[key] = posthoc_span(weights[key], frame2time[video_id])
    return spans


def score_files(
    gsub: Path,
    ground: Path | None = None,
    weights: Path | None = None,
    frame2time: Path | None = None,
    qa: Path | None = None,
) -> dict[str, Any]:
    """`cra score`: score a span file (`ground`), or weights grounded post-hoc, against gsub.

    Returns `score`'s result. Every wrong input raises `ScoringError` naming the file.
    """
    if (ground is None) == (weights is None):
        raise ScoringError("give exactly one of --ground SPANS.json or --weights WEIGHTS.json (with --frame2time)")
    if weights is not None and frame2time is None:
        raise ScoringError(f"--weights {weights} needs --frame2time F2T.json (the frame timestamps of its videos)")
    if ground is not None and frame2time is not None:
        raise ScoringError("--frame2time goes with --weights only; spans in --ground are already in seconds")

    labels = read_gsub(gsub)
    names = {"gsub": str(gsub), "spans": str(ground or weights), "qa": str(qa), "weights": str(weights)}
    if ground is not None:
        spans: Mapping[str, Sequence[float]] = read_spans(ground)
    else:
        curves = read_weights(weights)
        _require_overlap(list(curves), labelled_questions(labels), names)
        names["frame2time"] = str(frame2time)
        spans = posthoc_spans(labels, curves, read_frame2time(frame2time), names)
    answers = read_qa(qa) if qa is not None else None
    return _score(labels, spans, answers, None, names)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = temp_path(path)  # also removes the staging files of a killed run
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def write_official_files(
    folder: str | Path,
    keys: Sequence[str],
    spans: Mapping[str, np.ndarray],
    frame_weights: np.ndarray | Sequence[Sequence[float]] | None = None,
    answers: Sequence[Any] | None = None,
    predictions: Sequence[Any] | None = None,
    frame2time: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Path]:
    """Write NExT-GQA-format result files for N questions into `folder`; return `{name: path}`.

    keys: N `"<video_id>_<qid>"` keys (see `pipeline.artifacts.schemas.official_key`).
    spans: `{rule: (N, 2) seconds}` -> `ground_{rule}.json` each (e.g. ground_prehoc.json).
    frame_weights: `(N, T)` -> `weights.json`. answers, predictions: N each -> `qa.json`.
    frame2time: `{video_id: (T,) seconds}` -> `frame2time.json`, so that
    `cra score --weights weights.json --frame2time frame2time.json` re-grounds them post-hoc.
    """
    folder = Path(folder)
    keys = [str(key) for key in keys]
    if len(set(keys)) != len(keys):
        raise ValueError("keys must be unique (one row per question)")
    if (answers is None) != (predictions is None):
        raise ValueError("answers and predictions go together (qa.json needs both)")

    def by_key(rows: list[Any], what: str) -> dict[str, Any]:
        if len(rows) != len(keys):
            raise ValueError(f"{what} has {len(rows)} rows for {len(keys)} keys")
        return dict(zip(keys, rows, strict=True))

    contents: dict[str, Any] = {}
    for rule, rule_spans in spans.items():
        rule_spans = np.asarray(rule_spans, dtype=np.float64)
        if rule_spans.shape != (len(keys), 2):
            raise ValueError(f"spans[{rule!r}] must be ({len(keys)}, 2), got {rule_spans.shape}")
        contents[f"ground_{rule}"] = by_key(rule_spans.tolist(), f"spans[{rule!r}]")
    if frame_weights is not None:
        # Rows may differ in length (videos with fewer frames), so convert them one by one.
        curves = [np.asarray(curve, dtype=np.float64).tolist() for curve in frame_weights]
        contents["weights"] = by_key(curves, "frame_weights")
    if answers is not None:
        # Through numpy so numpy scalars (e.g. int32 from Arrow) become JSON numbers.
        answer_by_key = by_key(np.asarray(answers).tolist(), "answers")
        prediction_by_key = by_key(np.asarray(predictions).tolist(), "predictions")
        contents["qa"] = {key: {"answer": answer_by_key[key], "prediction": prediction_by_key[key]} for key in keys}
    if frame2time is not None:
        contents["frame2time"] = {
            str(video_id): np.asarray(stamps, dtype=np.float64).tolist() for video_id, stamps in frame2time.items()
        }

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in contents.items():
        paths[name] = folder / f"{name}.json"
        _write_json_atomic(paths[name], data)
    return paths


# ---------------------------------------------------------------------------------------------
# Report


def format_report(result: Mapping[str, Any]) -> str:
    """A table of the metrics (one decimal, as the official script prints): overall, then per type."""
    columns = [name for name in (*QA_METRICS, *GROUNDING_METRICS) if name in result["overall"]]
    rows = [("overall", result["n"], result["overall"])]
    for qtype, metrics in result.get("by_type", {}).items():
        rows.append((qtype, result["n_by_type"][qtype], metrics))

    header = ["", "n", *(METRIC_LABELS[name] for name in columns)]
    body = [[label, str(count), *(f"{metrics[name]:.1f}" for name in columns)] for label, count, metrics in rows]
    widths = [max(len(line[col]) for line in (header, *body)) for col in range(len(header))]

    def table_line(cells: list[str]) -> str:
        aligned = [cells[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)
        ]
        return "  ".join(aligned)

    summary = f"scored {result['n']} of {result['n_labelled']} labelled questions"
    if result.get("n_ignored"):
        summary += f"; ignored {result['n_ignored']} spans without a label"
    lines = [summary, table_line(header), *(table_line(line) for line in body)]
    return "\n".join(lines)
