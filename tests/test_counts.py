"""Honest counts: every question a split loses is counted by reason, and the metrics say so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.artifacts import schemas
from pipeline.artifacts.text_features import TextFeatures, TextTable, qa_text
from pipeline.artifacts.visual_features import VisualFeatures
from pipeline.training.batches import FeatureBank, load_split
from stages.evaluate import format_counts, split_metrics

T, D = 4, 3
OPTIONS = ["red", "blue"]


def text_table(kind: str, texts: list[str], tokens: bool = True) -> TextTable:
    n = len(texts)
    return TextTable(
        kind=kind,
        path=Path(f"{kind}.parquet"),
        texts=texts,
        index={text: row for row, text in enumerate(texts)},
        num_tokens=np.ones(n, dtype=np.int32),
        pooled=np.zeros((n, D), dtype=np.float32),
        tokens=np.zeros((n, 2, D), dtype=np.float32) if tokens else None,
        mask=np.ones((n, 2), dtype=np.int8) if tokens else None,
    )


def bank(video_ids: list[str], questions: list[str], no_frames: list[str]) -> FeatureBank:
    """Features for `video_ids`; `no_frames` are videos the extraction could not decode."""
    visual = VisualFeatures(
        video_ids=video_ids,
        features=np.zeros((len(video_ids), T, D), dtype=np.float32),
        timestamps=np.tile(np.arange(T, dtype=np.float64), (len(video_ids), 1)),
        metadata={"skipped_videos": [{"video_id": v, "path": f"{v}.mp4", "status": "corrupt"} for v in no_frames]},
    )
    qa_texts = [qa_text(q, o) for q in questions for o in OPTIONS]
    text = TextFeatures(
        question=text_table("question", questions),
        option=text_table("option", OPTIONS),
        qa=text_table("qa", qa_texts, tokens=False),
        metadata={"dim": D},
    )
    return FeatureBank(visual, text, None, None)


def qa_table(rows: list[tuple[str, str, list]]) -> pa.Table:
    """`(qid, video_id, segments)` rows of split `test`."""
    return pa.Table.from_pydict(
        {
            "split": ["test"] * len(rows),
            "qid": [qid for qid, _, _ in rows],
            "video_id": [video for _, video, _ in rows],
            "question": [f"what is {qid}?" for qid, _, _ in rows],
            "options": [OPTIONS] * len(rows),
            "answer": [0] * len(rows),
            "type": ["CW"] * len(rows),
            "segments": [segments for _, _, segments in rows],
            "duration": [4.0] * len(rows),
        },
        schema=schemas.QA,
    )


ROWS = [
    ("q0", "good", [[0.0, 2.0]]),
    ("q1", "good", []),  # answered, but no ground-truth segment
    ("q2", "undecodable", [[0.0, 1.0]]),  # probed fine, no frame decoded at extraction
    ("q3", "gone", [[1.0, 2.0]]),  # missing at prepare
    ("q4", "gone", [[1.0, 2.0]]),
    ("q5", "broken", [[1.0, 2.0]]),  # corrupt at prepare
]
STATUSES = {"good": "ok", "undecodable": "ok", "gone": "missing", "broken": "corrupt"}


def features() -> FeatureBank:
    return bank(["good"], [f"what is {qid}?" for qid, _, _ in ROWS], no_frames=["undecodable"])


def test_every_dropped_question_is_counted_under_its_reason():
    questions = load_split(qa_table(ROWS), "test", features(), STATUSES)
    assert questions.qids == ["q0", "q1"]
    counts = questions.counts()
    assert counts == {
        "n_total": 6,
        "n_scored": 2,
        "n_grounded": 1,
        "dropped": {"no_frames": 1, "video_corrupt": 1, "video_missing": 2, "no_grounding_labels": 1},
    }
    # Each question once: the video reasons account for total - scored, the unlabelled for scored - grounded.
    video_reasons = sum(v for k, v in counts["dropped"].items() if k != "no_grounding_labels")
    assert counts["n_total"] - counts["n_scored"] == video_reasons
    assert counts["n_scored"] - counts["n_grounded"] == counts["dropped"]["no_grounding_labels"]


def test_without_the_manifest_the_unusable_videos_are_counted_together():
    questions = load_split(qa_table(ROWS), "test", features())
    assert questions.dropped == {"no_frames": 1, "video_unusable": 3}
    assert questions.skipped_without_video == 4


def test_a_complete_split_drops_nothing():
    rows = [("q0", "good", [[0.0, 2.0]])]
    counts = load_split(qa_table(rows), "test", bank(["good"], ["what is q0?"], []), {"good": "ok"}).counts()
    assert counts == {"n_total": 1, "n_scored": 1, "n_grounded": 1, "dropped": {}}


def test_counts_follow_the_headline_metrics_in_the_split_metrics():
    result = {"n": 2, "acc_qa": 50.0, "rules": {"posthoc": {"overall": {"acc_gqa": 0.0}}}, "references": {}}
    diagnostics = {"ci95": {"acc_qa": {"low": 0.0, "high": 100.0}}}
    counts = load_split(qa_table(ROWS), "test", features(), STATUSES).counts()
    metrics = split_metrics(result, diagnostics, counts)
    assert list(metrics) == ["n", "acc_qa", "posthoc", "n_total", "n_scored", "n_grounded", "dropped", "ci95"]
    assert metrics["n"] == metrics["n_scored"] == 2 and metrics["dropped"]["video_missing"] == 2


def test_the_report_says_how_many_questions_were_scored_and_why_not_the_others():
    counts = load_split(qa_table(ROWS), "test", features(), STATUSES).counts()
    assert format_counts(counts) == (
        "questions: 6 in the split, 2 scored, 1 grounded; not scored or not grounded: "
        "no_frames 1, video_corrupt 1, video_missing 2, no_grounding_labels 1"
    )
    complete = {"n_total": 3, "n_scored": 3, "n_grounded": 3, "dropped": {}}
    assert format_counts(complete) == "questions: 3 in the split, 3 scored, 3 grounded"
