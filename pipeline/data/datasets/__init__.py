"""Dataset adapters: one module per benchmark, chosen by `data.dataset`.

    dataset = load_dataset(params.data)     # -> LoadedDataset (questions, video paths, frame times)
    table = qa_table(dataset.questions)     # -> pyarrow Table with schema pipeline.artifacts.schemas.QA

To add a benchmark, write a module with `load(data: DataConfig) -> LoadedDataset` and register it
in `ADAPTERS` (and in the `data.dataset` Literal of `pipeline/config.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow as pa

from pipeline.artifacts.schemas import QA
from pipeline.config import DataConfig
from pipeline.data.datasets import nextgqa, star, synthetic
from pipeline.data.datasets.base import AnnotationError, LoadedDataset, QARecord

ADAPTERS: dict[str, Callable[[DataConfig], LoadedDataset]] = {
    "synthetic": synthetic.load,
    "nextgqa": nextgqa.load,
    "star": star.load,
}

__all__ = ["ADAPTERS", "AnnotationError", "LoadedDataset", "QARecord", "load_dataset", "qa_table"]


def load_dataset(data: DataConfig) -> LoadedDataset:
    """Read the annotations of `data.dataset` for every split in `data.splits`."""
    try:
        adapter = ADAPTERS[data.dataset]
    except KeyError:
        raise AnnotationError(
            f"params: `data.dataset` {data.dataset!r} has no adapter; choose one of {sorted(ADAPTERS)}"
        ) from None
    return adapter(data)


def qa_table(questions: Iterable[QARecord]) -> pa.Table:
    """The questions as a table with schema `pipeline.artifacts.schemas.QA`, in the given order."""
    questions = list(questions)
    columns = {
        "split": [q.split for q in questions],
        "qid": [q.qid for q in questions],
        "video_id": [q.video_id for q in questions],
        "question": [q.question for q in questions],
        "options": [list(q.options) for q in questions],
        "answer": [q.answer for q in questions],
        "type": [q.type for q in questions],
        "segments": [[list(s) for s in q.segments] for q in questions],
        "duration": [q.duration for q in questions],
    }
    return pa.Table.from_pydict(columns, schema=QA)
