"""CRA's semantic structure graphs: the subject-verb-object structure of questions and answers.

CRA's linguistic causal intervention encodes, for every QA pair, a graph of 8 nodes
(`models.graph_nodes.GRAPH_NODES`): the question, its type, the question's subject(s), verb(s) and object(s),
the right answer, and the answer's verb(s) and object(s). This module builds them from a
dependency parse in Universal Dependencies terms. Both parsers (`pipeline.encoders.dependency_parsers`:
Stanza, the paper's, or spaCy, the offline default) feed ONE conversion, this module's:

    text --parser--> [Token] per sentence (UD) --graph_from_tokens--> SemanticGraph
         --build_qa_graph--> QAGraph (8 nodes + triples)

The parsers only turn their documents into neutral `Token` records (spaCy's labels and tree shape
are converted to UD first), so the same tree gives the same graph.

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

Empty, punctuation-only and verbless texts give empty nodes, never an error.

The paper's own notebook (Stanza) took the first `nsubj` as subject, every VERB's surface form as a
verb and every other NOUN/PROPN/ADJ as an object; the rules above keep its node semantics but follow
the dependency structure (so objects are what the verbs act on, not every noun).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from models.graph_nodes import GRAPH_NODES

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
    """CRA's 8-node graph of one QA pair; the first 8 fields are `GRAPH_NODES`, in order."""

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
