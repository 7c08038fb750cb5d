"""Stage `svo`: CRA's 8-node subject-verb-object graph of every question and its right answer.

Reads the QA table (`paths.qa_table`), parses each distinct question and right-answer text once
with the parser `svo.parser` names (spaCy offline by default, or Stanza, the paper's), and writes
`paths.svo_graphs` (schema `schemas.SVO_GRAPHS`): one row per QA, in the QA table's row order
(which `prepare` sorts by split, video_id, qid), with the 8 `node_*` strings and the SVO triples.
The parsers are in `pipeline.encoders.dependency_parsers`; the rules that turn a parse into nodes are in
`pipeline.encoders.semantic_graph`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from models.graph_nodes import GRAPH_NODES
from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import read_table, write_table
from pipeline.config import Params
from pipeline.encoders.dependency_parsers import (
    MAX_PARSE_CHARS,
    DependencyParser,
    load_parser,
    parse_graphs,
    prepare_text,
)
from pipeline.encoders.semantic_graph import QAGraph, SemanticGraph, build_qa_graph
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger, progress

log = get_logger("svo")

ARTIFACT = "svo_graphs"
_QA_COLUMNS = ["split", "qid", "video_id", "question", "options", "answer", "type"]


def read_qa_pairs(path: str | Path) -> pa.Table:
    """The QA columns this stage reads; each row's answer index must point at one of its options."""
    table = read_table(path, schemas.QA, columns=_QA_COLUMNS)
    rows = zip(
        *(table.column(name).to_pylist() for name in ("split", "video_id", "qid", "options", "answer")), strict=True
    )
    for row, (split, video_id, qid, options, answer) in enumerate(rows):
        if not options or answer is None or not 0 <= answer < len(options) or options[answer] is None:
            raise PipelineError(
                f"{path}: row {row} (split {split!r}, video {video_id!r}, qid {qid!r}) has answer index {answer!r} "
                f"but {len(options or [])} option(s); fix the annotations and re-run the prepare stage"
            )
    return table


def parse_unique(parser: DependencyParser, texts: list[str]) -> tuple[dict[str, SemanticGraph], float]:
    """The graph of each distinct text (keyed by its parser-prepared form) and the parse time in seconds."""
    unique = list(dict.fromkeys(prepare_text(t) for t in texts))
    start = time.perf_counter()
    graphs = dict(
        zip(
            unique,
            progress(parse_graphs(parser, unique), desc="svo parse", total=len(unique), unit="text"),
            strict=True,
        )
    )
    return graphs, time.perf_counter() - start


def qa_graphs(table: pa.Table, graphs: dict[str, SemanticGraph]) -> list[QAGraph]:
    """One 8-node graph per QA row, from the parsed question and right-answer texts."""
    out = []
    columns = (table.column(name).to_pylist() for name in ("question", "options", "answer", "type"))
    for question, options, answer, question_type in zip(*columns, strict=True):
        answer_text = options[answer]
        out.append(
            build_qa_graph(
                question, question_type, answer_text, graphs[prepare_text(question)], graphs[prepare_text(answer_text)]
            )
        )
    return out


def graphs_table(table: pa.Table, graphs: list[QAGraph]) -> pa.Table:
    """The artifact's columns: the QA keys, the 8 `node_*` strings and the triples."""
    columns: dict[str, Any] = {name: table.column(name) for name in ("split", "qid", "video_id")}
    for name in GRAPH_NODES:
        columns[f"node_{name}"] = pa.array([getattr(g, name) for g in graphs], pa.string())
    triples = [[{"subject": t.subject, "verb": t.verb, "object": t.object} for t in g.triples] for g in graphs]
    columns["triples"] = pa.array(triples, pa.list_(schemas.TRIPLE))
    return pa.table(columns)


def run(params: Params) -> None:
    cfg = params.svo
    table = read_qa_pairs(params.paths.qa_table)
    if table.num_rows == 0:
        raise PipelineError(
            f"{params.paths.qa_table} has no questions: check the prepare stage and `data.*` in params.yaml"
        )
    parser = load_parser(cfg)
    options, answers = table.column("options").to_pylist(), table.column("answer").to_pylist()
    texts = table.column("question").to_pylist() + [row[answer] for row, answer in zip(options, answers, strict=True)]
    graphs, seconds = parse_unique(parser, texts)
    log.info(
        "parsed %d distinct texts (of %d questions + answers) with %s in %.1f s: %.0f texts/s",
        len(graphs),
        len(texts),
        cfg.parser,
        seconds,
        len(graphs) / max(seconds, 1e-9),
    )
    rows = qa_graphs(table, graphs)
    out = graphs_table(table, rows)
    empty_verbs = sum(1 for g in rows if not g.verbs)
    log.info("%d QA graphs; %d questions without a content verb", len(rows), empty_verbs)
    metadata = {
        "artifact": ARTIFACT,
        **parser.describe(),
        "max_parse_chars": MAX_PARSE_CHARS,
        "rows": out.num_rows,
        "distinct_texts": len(graphs),
    }
    write_table(out, params.paths.svo_graphs, schemas.SVO_GRAPHS, metadata)
    log.info("wrote %s", params.paths.svo_graphs)
