"""NExT-GQA annotations (doc-doc/NExT-GQA, `datasets/nextgqa/`) -> `QARecord`s.

Files read from `data.annotation_dir`, for each split in `data.splits`:

- `{split}.csv`: `video_id,frame_count,width,height,question,answer,qid,type,a0..a4`. The answer is
  the right option's text in NExT-GQA's files (val, test, train) and its index 0-4 in NExT-QA's;
  both are accepted, decided once per file (`base.answers_are_indices`).
- `gsub_{split}.json` (optional; NExT-GQA's train split has none: it is weakly supervised):
  `{video_id: {"duration": s, "fps": f, "location": {qid: [[start_s, end_s], ...]}}}`. Every segment
  of a question is kept; a video may have an empty `location`; a question absent from it gets no
  segments, and the video's duration is used when given.
- `frame2time_{split}.json` (optional): `{video_id: [t_1 .. t_T]}`, the official frame times.
- `map_vid_vidorID.json`: `{video_id: "folder/video_id"}`; the video is `<data.video_root>/<path>.mp4`
  (`prepare` also accepts `.webm .mkv .avi .mov .m4v`). An absolute path, or one leading outside the
  video root, is refused for that video (`base.video_file`).

Files are read as UTF-8 (a leading BOM is accepted); other bytes are an error naming file, line and byte.

A split named in params whose csv is missing is an error naming the file and the param; an
empty split name ("" in params) means "no such split" and is skipped (`DataConfig.splits`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from pipeline.config import DataConfig
from pipeline.data.datasets.base import (
    AnnotationError,
    LoadedDataset,
    QARecord,
    answers_are_indices,
    missing_split_error,
    parse_segment,
    read_text,
    resolve_answer,
    sort_questions,
    video_file,
)

VIDEO_MAP = "map_vid_vidorID.json"
REQUIRED_COLUMNS = ("video_id", "question", "answer", "qid", "type")
_OPTION_COLUMN = re.compile(r"a(\d+)")


@dataclass(frozen=True)
class VideoGrounding:
    """One video's entry of `gsub_{split}.json`."""

    duration: float | None
    segments: dict[str, tuple[tuple[float, float], ...]]  # qid -> segments


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None


def read_grounding(path: Path) -> dict[str, VideoGrounding]:
    """`gsub_{split}.json` -> video_id -> VideoGrounding."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise AnnotationError(f"{path}: expected a mapping video_id -> {{duration, fps, location}}")
    grounding = {}
    for video_id, entry in raw.items():
        where = f"{path} video {video_id}"
        if not isinstance(entry, dict) or not isinstance(entry.get("location", {}), dict):
            raise AnnotationError(f'{where}: expected {{"duration": s, "fps": f, "location": {{qid: [[s, e], ...]}}}}')
        duration = entry.get("duration")
        if duration is not None:
            if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
                raise AnnotationError(f"{where}: duration must be a number of seconds, got {duration!r}")
            duration = float(duration)
        segments = {}
        for qid, spans in entry.get("location", {}).items():
            if not isinstance(spans, list):
                raise AnnotationError(f"{where} qid {qid}: expected a list of [start_s, end_s] segments, got {spans!r}")
            segments[str(qid)] = tuple(parse_segment(span, f"{where} qid {qid}") for span in spans)
        grounding[str(video_id)] = VideoGrounding(duration=duration, segments=segments)
    return grounding


def read_frame_times(path: Path) -> dict[str, list[float]]:
    """`frame2time_{split}.json` -> video_id -> sorted seconds."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise AnnotationError(f"{path}: expected a mapping video_id -> [t_1, ..., t_T]")
    times = {}
    for video_id, values in raw.items():
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        ):
            raise AnnotationError(f"{path} video {video_id}: expected a non-empty list of seconds, got {values!r}")
        if any(b < a for a, b in pairwise(values)):
            raise AnnotationError(f"{path} video {video_id}: timestamps must be sorted, got {values}")
        times[str(video_id)] = [float(v) for v in values]
    return times


def read_video_map(path: Path) -> dict[str, str]:
    """`map_vid_vidorID.json` -> video_id -> path relative to the video root, without `.mp4`."""
    if not path.exists():
        raise AnnotationError(f"{path} not found: it maps each video_id to its file under data.video_root")
    raw = read_json(path)
    if not isinstance(raw, dict) or not all(isinstance(v, str) and v for v in raw.values()):
        raise AnnotationError(f'{path}: expected a mapping video_id -> "folder/video_id"')
    return {str(k): v for k, v in raw.items()}


def _option_columns(header: list[str], path: Path) -> list[str]:
    numbered = sorted((int(m.group(1)), name) for name in header if (m := _OPTION_COLUMN.fullmatch(name)))
    columns = [name for _, name in numbered]
    if len(columns) < 2 or columns != [f"a{i}" for i in range(len(columns))]:
        raise AnnotationError(
            f"{path}: expected option columns a0, a1, ... (at least two, numbered from 0), got {columns}"
        )
    return columns


def read_questions(path: Path, split: str, grounding: dict[str, VideoGrounding]) -> tuple[list[QARecord], list[str]]:
    """`{split}.csv` -> QARecords (segments and duration from `grounding`), plus log warnings."""
    with io.StringIO(read_text(path), newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise AnnotationError(f"{path}: missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)} and a0..a4")
        option_columns = _option_columns(header, path)
        rows = []
        for row in reader:
            if None in row or any(row[c] is None for c in header):
                raise AnnotationError(f"{path} line {reader.line_num}: expected {len(header)} fields, like the header")
            rows.append((reader.line_num, row))

    as_index = answers_are_indices(
        [row["answer"] for _, row in rows],
        len(option_columns),
        [tuple(row[c] for c in option_columns) for _, row in rows],
    )
    questions, seen, ambiguous = [], {}, []
    for line, row in rows:
        video_id, qid = row["video_id"].strip(), row["qid"].strip()
        where = f"{path} line {line} (video {video_id or '?'}, qid {qid or '?'})"
        for column in ("video_id", "qid", "question"):
            if not row[column].strip():
                raise AnnotationError(f"{where}: `{column}` is empty")
        if (video_id, qid) in seen:
            raise AnnotationError(f"{where}: duplicate of line {seen[video_id, qid]} (same video_id and qid)")
        seen[video_id, qid] = line
        options = tuple(row[c] for c in option_columns)
        answer, is_ambiguous = resolve_answer(row["answer"], options, as_index, where)
        if is_ambiguous:
            ambiguous.append(f"{video_id}/{qid}")
        labels = grounding.get(video_id)
        questions.append(
            QARecord(
                split=split,
                qid=qid,
                video_id=video_id,
                question=row["question"],
                options=options,
                answer=answer,
                type=row["type"].strip(),
                segments=labels.segments.get(qid, ()) if labels else (),
                duration=labels.duration if labels else None,
            )
        )
    warnings = []
    if ambiguous:
        warnings.append(
            f"{path}: {len(ambiguous)} answer(s) match several identical options; the first is taken "
            f"(video/qid: {', '.join(ambiguous[:5])})"
        )
    return questions, warnings


def load(data: DataConfig, missing_hint: str = "") -> LoadedDataset:
    """Read every split of `data.splits` from `data.annotation_dir` (NExT-GQA file format)."""
    root = Path(data.annotation_dir)
    if not root.is_dir():
        raise AnnotationError(f"data.annotation_dir {root} is not a folder{missing_hint}")
    splits = tuple(data.splits)
    questions: list[QARecord] = []
    frame_times: dict[str, list[float]] = {}
    warnings: list[str] = []
    for split in splits:
        csv_path = root / f"{split}.csv"
        if not csv_path.exists():
            raise missing_split_error(data, split, csv_path, missing_hint)
        gsub_path = root / f"gsub_{split}.json"
        grounding = read_grounding(gsub_path) if gsub_path.exists() else {}
        if not gsub_path.exists() and split != data.train_split:
            warnings.append(f"{gsub_path} not found: split {split!r} has no grounding labels")
        split_questions, split_warnings = read_questions(csv_path, split, grounding)
        questions += split_questions
        warnings += split_warnings
        times_path = root / f"frame2time_{split}.json"
        if times_path.exists():
            for video_id, times in read_frame_times(times_path).items():
                frame_times.setdefault(video_id, times)  # a video in two splits keeps the first split's

    map_path = root / VIDEO_MAP
    video_map = read_video_map(map_path)
    video_ids = sorted({q.video_id for q in questions})
    unmapped = [v for v in video_ids if v not in video_map]
    if unmapped:
        raise AnnotationError(
            f"{map_path}: {len(unmapped)} video_id(s) used by the questions are not mapped to a file "
            f'(first: {", ".join(unmapped[:5])}); add them as "folder/video_id"'
        )
    located = {v: video_file(data.video_root, video_map[v]) for v in video_ids}
    return LoadedDataset(
        name="nextgqa",
        splits=splits,
        questions=sort_questions(questions, splits),
        video_paths={v: path for v, (path, _) in located.items()},
        frame_times={v: frame_times[v] for v in video_ids if v in frame_times},
        warnings=tuple(warnings),
        refused={v: why for v, (_, why) in located.items() if why},
    )
