"""What every dataset adapter returns, and the checks they share.

An adapter turns one benchmark's annotation files into `QARecord`s (one multiple-choice question
with its ground-truth segments) plus where each video lies, so `stages/prepare.py` never sees a
dataset's file format.
"""

from __future__ import annotations

import codecs
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from pipeline.config import DataConfig
from pipeline.errors import PipelineError


class AnnotationError(PipelineError):
    """A dataset's annotation file is missing or malformed; the message names the file and row."""


@dataclass(frozen=True)
class QARecord:
    """One question, as a row of the `QA` table (pipeline.artifacts.schemas.QA)."""

    split: str
    qid: str
    video_id: str
    question: str
    options: tuple[str, ...]
    answer: int  # index into options
    type: str
    segments: tuple[tuple[float, float], ...]  # ground truth [start_s, end_s]; empty when unlabelled
    duration: float | None  # seconds, from the annotation when it gives one


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset's questions and videos, ready for `stages/prepare.py`."""

    name: str
    splits: tuple[str, ...]  # in params order, train first
    questions: tuple[QARecord, ...]  # sorted by `sort_key`
    video_paths: dict[str, Path]  # video_id -> file, for every video a question refers to
    # NExT-GQA's official sampling times, video_id -> T seconds; empty for datasets without them.
    frame_times: dict[str, list[float]] = field(default_factory=dict)
    # Notes for the log (e.g. answers that match two identical options).
    warnings: tuple[str, ...] = ()
    # video_id -> why its path was refused (absolute, or outside data.video_root); its `video_paths`
    # entry is then the path as annotated, never opened.
    refused: dict[str, str] = field(default_factory=dict)


def read_text(path: Path) -> str:
    """A UTF-8 annotation file's text; a leading UTF-8 BOM (Excel's "CSV UTF-8") is dropped.

    Bytes that are not UTF-8 raise `AnnotationError` naming the file, line, byte offset and byte.
    """
    data = path.read_bytes()
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        line, line_start = data.count(b"\n", 0, offset) + 1, data.rfind(b"\n", 0, offset) + 1
        raise AnnotationError(
            f"{path} line {line}, byte {offset} (column {offset - line_start + 1}): "
            f'byte 0x{data[offset]:02x} is not valid UTF-8; save the file as UTF-8 (e.g. "CSV UTF-8")'
        ) from None


def video_file(video_root: str, relative: str, suffix: str = ".mp4") -> tuple[Path, str | None]:
    """`(path, refusal)` of the video an annotation names `relative` (to `data.video_root`, without suffix).

    An absolute path, or one whose `..` parts lead outside the video root, is refused: the path is
    returned as annotated, with the reason, and must never be opened (annotations from elsewhere must
    not make the pipeline read arbitrary files).
    """
    posix = PurePosixPath(relative.replace("\\", "/"))
    depth, escapes = 0, False
    for part in posix.parts:
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        escapes = escapes or depth < 0
    if posix.is_absolute() or PureWindowsPath(relative).drive:
        why = "is an absolute path"
    elif escapes:
        why = "leads outside it (`..`)"
    else:
        return Path(video_root) / f"{relative}{suffix}", None
    return Path(relative), (
        f"refused: the annotated path {relative!r} {why}; video paths must lie under data.video_root "
        f"({video_root}). The file was not opened"
    )


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: "2" < "10", "Interaction_T1_2" < "Interaction_T1_13"."""
    # re.split with a capturing group alternates text and digit runs, starting with text, so the
    # tuples compare str with str and int with int at every position.
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text)))


def sort_questions(questions: list[QARecord], splits: tuple[str, ...]) -> tuple[QARecord, ...]:
    """Deterministic row order: split (params order), then video_id, then qid (natural order).

    NExT-GQA qids are only unique within a video, so (video_id, qid) is the key it scores by. The raw
    strings break ties between ids of equal value ("07" and "7"), so the order never depends on the
    order of the input files.
    """
    rank = {split: i for i, split in enumerate(splits)}

    def key(q: QARecord) -> tuple:
        return rank[q.split], natural_key(q.video_id), q.video_id, natural_key(q.qid), q.qid

    return tuple(sorted(questions, key=key))


def split_param(data: DataConfig, split: str) -> str:
    """The params key that named `split`, for error messages."""
    if split == data.train_split:
        return "data.train_split"
    if split == data.val_split:
        return "data.val_split"
    return "data.eval_splits"


def missing_split_error(data: DataConfig, split: str, path: Path, what: str = "") -> AnnotationError:
    key = split_param(data, split)
    if key == "data.eval_splits":
        fix = f"remove {split!r} from data.eval_splits or add the file"
    else:
        fix = f'set {key} to the split your copy has, or to "" if it has none (e.g. NExT-GQA ships no train.csv)'
    return AnnotationError(f"{path} not found: split {split!r} (from `{key}`) needs it{what}; {fix}")


def resolve_answer(raw: Any, options: tuple[str, ...], as_index: bool, where: str) -> tuple[int, bool]:
    """`(answer index, ambiguous)` for an annotated answer given as an index or as the option text.

    Text is matched against the options after stripping surrounding whitespace; when it equals
    several (identical) options the first is taken and `ambiguous` is True, for a logged warning.
    """
    if as_index:
        index = int(str(raw).strip())
        if not 0 <= index < len(options):
            raise AnnotationError(
                f"{where}: answer index {index} is outside the {len(options)} options (0-{len(options) - 1}); "
                "answers in this file are option indices"
            )
        return index, False
    text = str(raw).strip()
    matches = [i for i, option in enumerate(options) if option.strip() == text]
    if not matches:
        raise AnnotationError(
            f"{where}: answer {text!r} matches none of the options {list(options)}; answers in this file "
            "are option texts (not all of them are option indices), so each must equal one option"
        )
    return matches[0], len(matches) > 1


_INTEGER = re.compile(r"[+-]?\d+")


def answers_are_indices(raw_answers: list[Any], num_options: int, options: list[tuple[str, ...]] | None = None) -> bool:
    """Whether a file gives answers as option indices (NExT-QA) rather than option texts (NExT-GQA).

    Decided once per file, not per row: in a text file an answer "3" is the option reading "3". A file
    whose answers are all integers gives indices, so one out of range (7 of 5 options, -1) is reported
    on its own row, unless every answer is also the text of one of its row's `options` (a file of
    numeric option texts, e.g. counting questions).
    """
    texts = [str(raw).strip() for raw in raw_answers]
    if not all(_INTEGER.fullmatch(text) for text in texts):
        return False
    if all(0 <= int(text) < num_options for text in texts):
        return True
    if options is not None and all(text in {o.strip() for o in row} for text, row in zip(texts, options, strict=True)):
        return False
    return True


def parse_segment(value: Any, where: str) -> tuple[float, float]:
    """A ground-truth `[start_s, end_s]`, start <= end, kept verbatim.

    Starts slightly below 0 (e.g. -0.1 in NExT-GQA's test labels) are kept: the official scorer
    uses the labels as they are, and so must we for comparable numbers.
    """
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise AnnotationError(f"{where}: a segment must be [start_s, end_s] (two numbers), got {value!r}")
    start, end = float(value[0]), float(value[1])
    if not (math.isfinite(start) and math.isfinite(end)) or start > end:
        raise AnnotationError(f"{where}: segment {value!r} must have finite start <= end")
    return start, end
