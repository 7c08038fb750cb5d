"""NExT-GQA metrics: golden values on hand-computed spans, the real val labels, result files, `cra score`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from models.grounding import posthoc_span
from pipeline.cli import app
from pipeline.evaluation.scoring import (
    ScoringError,
    best_overlap,
    format_report,
    labelled_questions,
    score,
    score_files,
    segment_overlap,
    write_official_files,
)

GROUNDING_KEYS = {"miop", "iop@0.3", "iop@0.5", "miou", "iou@0.3", "iou@0.5"}
ALL_KEYS = GROUNDING_KEYS | {"acc_qa", "acc_gqa"}


# ---------------------------------------------------------------------------------------------
# One span against labelled segments


@pytest.mark.parametrize(
    ("span", "segment", "expected"),
    [
        ((2.0, 6.0), (4.0, 10.0), (2 / 8, 2 / 4)),  # partial overlap
        ((0.0, 10.0), (2.0, 4.0), (2 / 10, 2 / 10)),  # prediction covers the segment
        ((3.0, 4.0), (0.0, 10.0), (1 / 10, 1.0)),  # prediction inside the segment
        ((0.0, 2.0), (5.0, 9.0), (0.0, 0.0)),  # no overlap
        ((0.0, 5.0), (5.0, 9.0), (0.0, 0.0)),  # touching
        ((5.0, 5.0), (4.0, 10.0), (0.0, 1.0)),  # zero-length inside
        ((4.0, 4.0), (4.0, 10.0), (0.0, 1.0)),  # zero-length on an end: inside
        ((3.0, 3.0), (4.0, 10.0), (0.0, 0.0)),  # zero-length outside
    ],
)
def test_segment_overlap(span, segment, expected):
    assert segment_overlap(span, segment) == pytest.approx(expected, abs=1e-12)


def test_max_iou_and_max_iop_come_from_different_segments():
    # The long segment holds the whole prediction (IoP 1, IoU 0.02); the short one overlaps
    # half of it (IoP 0.5, IoU 1/3).
    assert best_overlap((4.0, 6.0), [(0.0, 100.0), (5.0, 7.0)]) == pytest.approx((1 / 3, 1.0))
    assert best_overlap((4.0, 6.0), []) == (0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Hand-computed set

GSUB = {
    "v1": {"duration": 20, "fps": 30, "location": {"1": [[0.0, 10.0]], "2": [[0.0, 100.0], [5.0, 7.0]]}},
    "v2": {"duration": 12, "fps": 30, "location": {"3": [[4.0, 10.0]], "4": [[2.0, 3.0]]}},
}
SPANS = {
    "v1_1": [0.0, 10.0],  # IoU 1, IoP 1
    "v1_2": [4.0, 6.0],  # IoU 1/3 (second segment), IoP 1 (first)
    "v2_3": [2.0, 6.0],  # IoU 0.25, IoP 0.5
    "v2_4": [8.0, 8.0],  # zero-length outside: 0, 0
    "v9_1": [0.0, 1.0],  # no label: ignored
}
QA = {
    "v1_1": {"answer": 2, "prediction": 2},
    "v1_2": {"answer": 0, "prediction": 1},
    "v2_3": {"answer": 4, "prediction": 4},
    "v2_4": {"answer": 3, "prediction": 3},
}
EXPECTED = {
    "acc_qa": 75.0,
    "acc_gqa": 50.0,  # v1_1 and v2_3 (IoP exactly 0.5); v2_4 is right but grounded outside
    "miou": (1 + 1 / 3 + 0.25 + 0) / 4 * 100,
    "iou@0.3": 50.0,
    "iou@0.5": 25.0,
    "miop": (1 + 1 + 0.5 + 0) / 4 * 100,
    "iop@0.3": 75.0,
    "iop@0.5": 75.0,
}


def test_score_golden_values_and_counts():
    result = score(GSUB, SPANS, QA)
    assert set(result["overall"]) == ALL_KEYS
    assert result["overall"] == pytest.approx(EXPECTED)
    assert (result["n"], result["n_labelled"], result["n_ignored"]) == (4, 4, 1)
    assert set(score(GSUB, SPANS)["overall"]) == GROUNDING_KEYS


def test_only_labelled_questions_with_a_span_count():
    spans = {key: span for key, span in SPANS.items() if key != "v2_4"}
    result = score(GSUB, spans, QA)
    assert result["n"] == 3
    assert result["overall"]["miop"] == pytest.approx(2.5 / 3 * 100)
    assert result["overall"]["acc_qa"] == pytest.approx(2 / 3 * 100)


def test_score_by_type():
    types = {"v1_1": "CW", "v1_2": "CW", "v2_3": "TN", "v2_4": "TN"}
    result = score(GSUB, SPANS, QA, types=types)
    assert result["n_by_type"] == {"CW": 2, "TN": 2}
    assert result["by_type"]["CW"] == pytest.approx(
        {
            "acc_qa": 50.0,
            "acc_gqa": 50.0,
            "miou": (1 + 1 / 3) / 2 * 100,
            "iou@0.3": 100.0,
            "iou@0.5": 50.0,
            "miop": 100.0,
            "iop@0.3": 100.0,
            "iop@0.5": 100.0,
        }
    )
    assert result["by_type"]["TN"] == pytest.approx(
        {
            "acc_qa": 100.0,
            "acc_gqa": 50.0,
            "miou": 12.5,
            "iou@0.3": 0.0,
            "iou@0.5": 0.0,
            "miop": 25.0,
            "iop@0.3": 50.0,
            "iop@0.5": 50.0,
        }
    )
    report = format_report(result)
    assert "scored 4 of 4 labelled questions; ignored 1 spans without a label" in report
    lines = report.splitlines()
    assert lines[1].split() == ["n", "Acc@QA", "Acc@GQA", "mIoP", "IoP@0.3", "IoP@0.5", "mIoU", "IoU@0.3", "IoU@0.5"]
    assert lines[2].split() == ["overall", "4", "75.0", "50.0", "62.5", "75.0", "75.0", "39.6", "50.0", "25.0"]
    assert [line.split()[0] for line in lines[3:]] == ["CW", "TN"]


def test_score_refuses_unscorable_inputs():
    with pytest.raises(ScoringError, match="is a question of"):
        score(GSUB, {"v9_1": [0.0, 1.0]})
    with pytest.raises(ScoringError, match="keys must look like '<video_id>_<qid>'"):
        score(GSUB, {"v1-1": [0.0, 1.0]})
    with pytest.raises(ScoringError, match="no answer for 1 of the 4"):
        score(GSUB, SPANS, {key: row for key, row in QA.items() if key != "v1_2"})
    with pytest.raises(ScoringError, match="no question type"):
        score(GSUB, SPANS, types={"v1_1": "CW"})


# ---------------------------------------------------------------------------------------------
# Real NExT-GQA val labels


def expected_metrics(gsub: dict, spans: dict, qa: dict | None) -> tuple[dict, int]:
    """The README's definition written out as a plain loop, independently of pipeline.evaluation.scoring."""
    ious, iops, correct = [], [], []
    for video_id, video in gsub.items():
        for qid, segments in video["location"].items():
            key = f"{video_id}_{qid}"
            if key not in spans:
                continue
            start, end = spans[key]
            per_segment = []
            for seg_start, seg_end in segments:
                if end == start:
                    per_segment.append((0.0, 1.0 if seg_start <= start <= seg_end else 0.0))
                    continue
                overlap = max(0.0, min(end, seg_end) - max(start, seg_start))
                per_segment.append((overlap / (max(end, seg_end) - min(start, seg_start)), overlap / (end - start)))
            ious.append(max(iou for iou, _ in per_segment))
            iops.append(max(iop for _, iop in per_segment))
            if qa is not None:
                correct.append(qa[key]["answer"] == qa[key]["prediction"])
    ious, iops = np.array(ious), np.array(iops)
    metrics = {
        "miou": ious.mean() * 100,
        "iou@0.3": (ious >= 0.3).mean() * 100,
        "iou@0.5": (ious >= 0.5).mean() * 100,
        "miop": iops.mean() * 100,
        "iop@0.3": (iops >= 0.3).mean() * 100,
        "iop@0.5": (iops >= 0.5).mean() * 100,
    }
    if qa is not None:
        correct = np.array(correct)
        metrics["acc_qa"] = correct.mean() * 100
        metrics["acc_gqa"] = (correct & (iops >= 0.5)).mean() * 100
    return metrics, len(ious)


def spans_for_real_labels(gsub: dict) -> dict[str, list[float]]:
    """Variants of each question's labels: exact, shifted, shrunk, zero-length inside and outside, covering;
    with several segments, one straddling the first two instead of shifted and covering. Every 7th
    question gets no span."""
    spans = {}
    index = 0
    for video_id, video in gsub.items():
        for qid, segments in video["location"].items():
            index += 1
            if index % 7 == 0:
                continue
            first_start, first_end = segments[0]
            middle = (first_start + first_end) / 2
            variants = [
                [first_start, first_end],
                [first_start + 1.5, first_end + 1.5],
                [(first_start + middle) / 2, (middle + first_end) / 2],
                [middle, middle],
                [video["duration"] + 5.0, video["duration"] + 5.0],
                [max(0.0, first_start - 2.0), segments[-1][1]],
            ]
            if len(segments) > 1:
                # More of the span on the first segment (max IoP), the second one whole (max IoU when short).
                second_start, second_end = segments[1]
                variants[1] = variants[5] = [first_end - 1.2 * (second_end - second_start), second_end]
            spans[f"{video_id}_{qid}"] = variants[index % 6]
    return spans


@pytest.fixture(scope="module")
def real_val(nextgqa_dir):
    gsub = json.loads((nextgqa_dir / "gsub_val.json").read_text())
    spans = spans_for_real_labels(gsub)
    qa = {key: {"answer": 1, "prediction": 1 if index % 3 else 2} for index, key in enumerate(labelled_questions(gsub))}
    return gsub, spans, qa


def test_real_val_labels_match_the_definition(real_val):
    gsub, spans, qa = real_val
    expected, count = expected_metrics(gsub, spans, qa)
    result = score(gsub, spans, qa)
    assert result["n"] == count == len(spans)
    assert result["n_labelled"] == 3358
    assert result["overall"] == pytest.approx(expected, abs=1e-6)
    # The set exercises the multi-segment case where max IoU and max IoP come from different segments.
    labelled = labelled_questions(gsub)
    split_maxima = 0
    for key, span in spans.items():
        if len(labelled[key]) > 1:
            overlaps = [segment_overlap(span, segment) for segment in labelled[key]]
            split_maxima += np.argmax([o[0] for o in overlaps]) != np.argmax([o[1] for o in overlaps])
    assert split_maxima > 10


def test_cra_score_json_on_real_val_labels(real_val, nextgqa_dir, tmp_path):
    gsub, spans, qa = real_val
    (tmp_path / "spans.json").write_text(json.dumps(spans))
    (tmp_path / "qa.json").write_text(json.dumps(qa))
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--gsub",
            str(nextgqa_dir / "gsub_val.json"),
            "--ground",
            str(tmp_path / "spans.json"),
            "--qa",
            str(tmp_path / "qa.json"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == ALL_KEYS
    assert printed == pytest.approx(expected_metrics(gsub, spans, qa)[0], abs=1e-6)


def test_weights_are_grounded_post_hoc_at_frame2time(nextgqa_dir, tmp_path):
    gsub = json.loads((nextgqa_dir / "gsub_val.json").read_text())
    frame2time = json.loads((nextgqa_dir / "frame2time_val.json").read_text())
    rng = np.random.default_rng(0)
    weights, spans = {}, {}
    for index, (video_id, video) in enumerate(gsub.items()):
        if index % 4:
            continue
        for qid in video["location"]:
            logits = rng.normal(size=len(frame2time[video_id])) * 2.0
            curve = np.exp(logits) / np.exp(logits).sum()
            weights[f"{video_id}_{qid}"] = curve.tolist()
            spans[f"{video_id}_{qid}"] = posthoc_span(curve, np.asarray(frame2time[video_id]))
    (tmp_path / "weights.json").write_text(json.dumps(weights))

    result = score_files(
        gsub=nextgqa_dir / "gsub_val.json",
        weights=tmp_path / "weights.json",
        frame2time=nextgqa_dir / "frame2time_val.json",
    )
    assert result["n"] == len(weights) < 3358
    assert result["overall"] == pytest.approx(expected_metrics(gsub, spans, None)[0], abs=1e-9)

    cli = CliRunner().invoke(
        app,
        [
            "score",
            "--gsub",
            str(nextgqa_dir / "gsub_val.json"),
            "--weights",
            str(tmp_path / "weights.json"),
            "--frame2time",
            str(nextgqa_dir / "frame2time_val.json"),
            "--json",
        ],
    )
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == result["overall"]


# ---------------------------------------------------------------------------------------------
# Result files and `cra score` errors


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture()
def files(tmp_path):
    return {
        "gsub": write(tmp_path / "gsub.json", GSUB),
        "spans": write(tmp_path / "spans.json", SPANS),
        "qa": write(tmp_path / "qa.json", QA),
    }


def run_score(*args: str):
    return CliRunner().invoke(app, ["score", *args])


def test_cra_score_prints_the_overall_metrics(files):
    gsub, spans = str(files["gsub"]), str(files["spans"])
    result = run_score("--gsub", gsub, "--ground", spans, "--qa", str(files["qa"]), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == pytest.approx(EXPECTED)

    result = run_score("--gsub", gsub, "--ground", spans, "--json")
    assert set(json.loads(result.stdout)) == GROUNDING_KEYS

    result = run_score("--gsub", gsub, "--ground", spans)
    assert result.exit_code == 0
    assert "scored 4 of 4 labelled questions" in result.stdout and "mIoP" in result.stdout


def test_cra_score_errors_name_the_file(files, tmp_path):
    gsub, spans = str(files["gsub"]), str(files["spans"])
    bad_json = write(tmp_path / "bad.json", '{"v1_1": [0, 1],')
    wrong_keys = write(tmp_path / "dashes.json", {"v1-1": [0.0, 1.0]})
    other_split = write(tmp_path / "other.json", {"v7_1": [0.0, 1.0]})
    reversed_span = write(tmp_path / "reversed.json", {"v1_1": [5.0, 2.0]})
    short_weights = write(tmp_path / "weights.json", {"v1_1": [0.1, 0.9]})
    frame2time = write(tmp_path / "f2t.json", {"v1": [1.0, 2.0, 3.0]})
    partial_qa = write(tmp_path / "qa_part.json", {"v1_1": QA["v1_1"]})
    cases = [
        ([], "exactly one of --ground"),
        (["--ground", spans, "--weights", str(short_weights)], "exactly one of --ground"),
        (["--weights", str(short_weights)], "needs --frame2time"),
        (["--ground", spans, "--frame2time", str(frame2time)], "--frame2time goes with --weights"),
        (["--ground", str(bad_json)], f"{bad_json} is not valid JSON"),
        (["--ground", str(tmp_path / "missing.json")], "missing.json does not exist"),
        (["--ground", str(wrong_keys)], f"{wrong_keys}: keys must look like '<video_id>_<qid>'"),
        (["--ground", str(other_split)], f"{other_split}: none of its 1 keys"),
        (["--ground", str(reversed_span)], f"{reversed_span}: 'v1_1' has [5.0, 2.0]"),
        (["--weights", str(short_weights), "--frame2time", str(frame2time)], "has 2 weights but"),
        (["--weights", str(wrong_keys), "--frame2time", str(frame2time)], "keys must look like"),
        (["--ground", spans, "--qa", str(partial_qa)], f"{partial_qa} has no answer"),
    ]
    for args, message in cases:
        result = run_score("--gsub", gsub, *args, "--json")
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output

    result = run_score("--gsub", str(write(tmp_path / "flat.json", {"v1": {"1": [0, 1]}})), "--ground", spans)
    assert result.exit_code == 2 and "flat.json: video 'v1' has no `location` object" in result.stderr


def test_weights_need_timestamps_for_their_video(files, tmp_path):
    weights = write(tmp_path / "weights.json", {"v2_3": [0.1, 0.9, 0.2]})
    frame2time = write(tmp_path / "f2t.json", {"v1": [1.0, 2.0, 3.0]})
    with pytest.raises(ScoringError, match=f"{frame2time} has no timestamps for video 'v2'"):
        score_files(gsub=files["gsub"], weights=weights, frame2time=frame2time)


def test_official_files_round_trip_through_cra_score(tmp_path):
    keys = ["v1_1", "v1_2", "v2_3", "v2_4"]
    timestamps = {"v1": [1.0, 3.0, 5.0, 7.0, 9.0, 11.0], "v2": [0.5, 2.5, 4.5, 6.5, 8.5, 10.5]}
    weights = np.array(
        [
            [0.1, 0.2, 0.9, 0.3, 0.1, 0.1],
            [0.1, 0.1, 0.2, 0.8, 0.7, 0.1],
            [0.3, 0.2, 0.9, 0.1, 0.0, 0.0],
            [0.0, 0.0, 0.1, 0.2, 0.6, 0.9],
        ],
        dtype=np.float32,
    )
    posthoc = np.array([posthoc_span(w, timestamps[k.split("_")[0]]) for k, w in zip(keys, weights, strict=True)])
    prehoc = np.array([[0.0, 4.0], [1.0, 2.0], [3.0, 3.0], [9.0, 11.0]])
    paths = write_official_files(
        tmp_path / "official",
        keys,
        {"prehoc": prehoc, "posthoc": posthoc},
        frame_weights=weights,
        answers=np.array([1, 2, 3, 4], dtype=np.int32),
        predictions=np.array([1, 0, 3, 4], dtype=np.int32),
        frame2time=timestamps,
    )
    assert {name: path.name for name, path in paths.items()} == {
        "ground_prehoc": "ground_prehoc.json",
        "ground_posthoc": "ground_posthoc.json",
        "weights": "weights.json",
        "qa": "qa.json",
        "frame2time": "frame2time.json",
    }
    gsub = write(tmp_path / "gsub.json", GSUB)
    qa = {key: {"answer": a, "prediction": p} for key, a, p in zip(keys, [1, 2, 3, 4], [1, 0, 3, 4], strict=True)}
    for rule, spans in (("prehoc", prehoc), ("posthoc", posthoc)):
        from_files = score_files(gsub=gsub, ground=paths[f"ground_{rule}"], qa=paths["qa"])
        assert from_files == score(GSUB, dict(zip(keys, spans.tolist(), strict=True)), qa)
    regrounded = score_files(gsub=gsub, weights=paths["weights"], frame2time=paths["frame2time"], qa=paths["qa"])
    assert regrounded == score(GSUB, dict(zip(keys, posthoc.tolist(), strict=True)), qa)
    with pytest.raises(ValueError, match="must be \\(4, 2\\)"):
        write_official_files(tmp_path / "bad", keys, {"merged": prehoc[:3]})
