"""STAR (Situated Reasoning, Wu et al. NeurIPS 2021) annotations -> `QARecord`s.

`<data.annotation_dir>/STAR_{split}.json` is a list of questions:
`{"question_id": "Interaction_T1_13", "question": ..., "video_id": "6H78U", "start": s, "end": e,
"answer": text, "choices": [{"choice_id": 0, "choice": text}, ... 4 items]}` (other keys, such as
`situations`, are ignored). The question family (Interaction, Sequence, Prediction, Feasibility) is
the `question_id` prefix before the first `_`; the ground-truth segment is [start, end]; the video
(Charades) is `<data.video_root>/<video_id>.mp4` (a video_id that is an absolute path or leads outside
the root is refused for that video). STAR gives no video duration (null).
STAR's public test file hides the answers: it cannot be a split here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import DataConfig
from pipeline.data.datasets.base import (
    AnnotationError,
    LoadedDataset,
    QARecord,
    missing_split_error,
    parse_segment,
    resolve_answer,
    sort_questions,
    video_file,
)
from pipeline.data.datasets.nextgqa import read_json

NUM_CHOICES = 4
REQUIRED_KEYS = ("question_id", "question", "video_id", "start", "end", "answer", "choices")


def _choices(raw: Any, where: str) -> tuple[str, ...]:
    """The option texts ordered by `choice_id`."""
    if not isinstance(raw, list) or len(raw) != NUM_CHOICES:
        raise AnnotationError(
            f"{where}: `choices` must be a list of {NUM_CHOICES} {{choice_id, choice}} items, got {raw!r}"
        )
    for item in raw:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("choice_id"), int)
            and isinstance(item.get("choice"), str)
            and item["choice"].strip()
        ):
            raise AnnotationError(f'{where}: each choice must be {{"choice_id": int, "choice": text}}, got {item!r}')
    ids = sorted(item["choice_id"] for item in raw)
    if ids != list(range(NUM_CHOICES)):
        raise AnnotationError(f"{where}: choice_ids must be 0..{NUM_CHOICES - 1}, got {ids}")
    return tuple(item["choice"] for item in sorted(raw, key=lambda item: item["choice_id"]))


def read_questions(path: Path, split: str) -> tuple[list[QARecord], list[str]]:
    raw = read_json(path)
    if not isinstance(raw, list):
        raise AnnotationError(f"{path}: expected a list of questions")
    questions, seen, ambiguous = [], {}, []
    for row, item in enumerate(raw):
        qid = item.get("question_id") if isinstance(item, dict) else None
        where = f"{path} item {row} (question_id {qid})"
        if not isinstance(item, dict):
            raise AnnotationError(f"{where}: expected an object with keys {list(REQUIRED_KEYS)}")
        missing = [k for k in REQUIRED_KEYS if k not in item]
        if missing == ["answer"]:
            raise AnnotationError(f"{where}: no `answer` (STAR's test answers are hidden: use train/val splits)")
        if missing:
            raise AnnotationError(f"{where}: missing key(s) {missing}")
        for key in ("question_id", "question", "video_id", "answer"):
            if not isinstance(item[key], str) or not item[key].strip():
                raise AnnotationError(f"{where}: `{key}` must be non-empty text, got {item[key]!r}")
        qid = item["question_id"].strip()
        if qid in seen:
            raise AnnotationError(f"{where}: duplicate question_id (also item {seen[qid]})")
        seen[qid] = row
        options = _choices(item["choices"], where)
        answer, is_ambiguous = resolve_answer(item["answer"], options, as_index=False, where=where)
        if is_ambiguous:
            ambiguous.append(qid)
        questions.append(
            QARecord(
                split=split,
                qid=qid,
                video_id=item["video_id"].strip(),
                question=item["question"],
                options=options,
                answer=answer,
                type=qid.split("_", 1)[0],
                segments=(parse_segment([item["start"], item["end"]], where),),
                duration=None,
            )
        )
    warnings = []
    if ambiguous:
        warnings.append(
            f"{path}: {len(ambiguous)} answer(s) match several identical choices; "
            f"the first is taken ({', '.join(ambiguous[:5])})"
        )
    return questions, warnings


def load(data: DataConfig) -> LoadedDataset:
    root = Path(data.annotation_dir)
    if not root.is_dir():
        raise AnnotationError(f"data.annotation_dir {root} is not a folder (it should hold STAR_{{split}}.json)")
    splits = tuple(data.splits)
    questions: list[QARecord] = []
    warnings: list[str] = []
    for split in splits:
        path = root / f"STAR_{split}.json"
        if not path.exists():
            raise missing_split_error(data, split, path)
        split_questions, split_warnings = read_questions(path, split)
        questions += split_questions
        warnings += split_warnings
    located = {v: video_file(data.video_root, v) for v in sorted({q.video_id for q in questions})}
    return LoadedDataset(
        name="star",
        splits=splits,
        questions=sort_questions(questions, splits),
        video_paths={v: path for v, (path, _) in located.items()},
        warnings=tuple(warnings),
        refused={v: why for v, (_, why) in located.items() if why},
    )
