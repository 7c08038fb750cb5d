"""Five-way multiple-choice questions with ground-truth evidence, from a video's script.

Every object of a video is the subject of exactly one question (so the backdrop cue behind it
belongs to one question). Families, easiest first (type codes as in NExT-QA where they exist):
- DO "what did the X do": X acts once; the answer is its event. Needs X's event found (grounding)
  and its kind read; the other four kinds were done by other objects at other times.
- TN "what did the X do after the Y <past>" / TP "... before the Y <past>": X acts twice (a repeat
  actor); the answer is X's first event after (last before) Y's event. One wrong option is always
  X's other event, so the relation in time decides, not only which object acted.
- CW "why did the X <base>": X acts twice; the cause of an event is, in this world, the event that
  ends right before it starts (events happen one at a time); the answer is "because the Y <past>".
Evidence: the event the right option names (for CW, the cause). Wrong options: one per event kind
other than the answer's, each an event of the same video outside every evidence segment (for TN/TP
the subject's own other event fills its kind). A model that does not find the evidence cannot tell
the right option from the wrong ones, and no video-level property answers a question: each video's
questions cover several answer kinds.

`candidates_for` enumerates the well-posed questions about one subject (pure, no RNG); the
dataset picks one per subject, draws one wrong option from each pool and the answer's position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.synthetic.timeline import Event, VideoScript
from pipeline.data.synthetic.vocabulary import KIND_NAMES

NUM_OPTIONS = 5
TYPES = ("DO", "TN", "TP", "CW")
FAMILY_OF_TYPE = {"DO": "what", "TN": "temporal", "TP": "temporal", "CW": "causal"}
COMPOSITIONAL_TYPES = ("TN", "TP", "CW")


@dataclass(frozen=True)
class Candidate:
    """A question before its wrong options, lead-in and option order are drawn."""

    qtype: str
    subject: int  # SceneObject.index of X
    body: str  # the question after its lead-in
    answer_text: str
    answer_kind: str
    evidence_events: tuple[int, ...]  # the events the right option names
    reference_events: tuple[int, ...]  # Y's event (TN/TP) or X's effect event (CW)
    segments_ds: tuple[tuple[int, int], ...]  # ground-truth evidence, deciseconds
    # One pool per event kind other than the answer's: (option text, event index) choices.
    distractor_pools: tuple[tuple[tuple[str, int], ...], ...]


@dataclass(frozen=True)
class Question:
    qid: int
    qtype: str
    subject: int
    text: str
    options: tuple[str, ...]
    answer: int  # index into options
    answer_kind: str
    option_kinds: tuple[str, ...]  # the event kind each option names (one each of the 5)
    lead_in: str  # the linguistic nuisance value
    cue: str  # the visual nuisance value: the colour of the backdrop behind the subject
    segments_ds: tuple[tuple[int, int], ...]
    evidence_events: tuple[int, ...]
    reference_events: tuple[int, ...]
    option_events: tuple[tuple[int, ...], ...]  # per option, the event(s) its text names

    @property
    def segments_s(self) -> list[list[float]]:
        return [[start / 10, end / 10] for start, end in self.segments_ds]

    @property
    def family(self) -> str:
        return FAMILY_OF_TYPE[self.qtype]


def _pools(
    events: list[Event], answer_kind: str, fixed: dict[str, Event], text_of, avoid: set[int] = frozenset()
) -> tuple[tuple[tuple[str, int], ...], ...] | None:
    """Per kind other than `answer_kind`: `fixed[kind]` if given, else the `events` of that kind,
    preferring those not in `avoid`. None when a kind has no event."""
    pools = []
    for kind in KIND_NAMES:
        if kind == answer_kind:
            continue
        if kind in fixed:
            pools.append(((text_of(fixed[kind]), fixed[kind].index),))
            continue
        of_kind = [e for e in events if e.kind == kind]
        preferred = [e for e in of_kind if e.index not in avoid] or of_kind
        if not preferred:
            return None
        pools.append(tuple((text_of(e), e.index) for e in preferred))
    return tuple(pools)


def what_candidate(script: VideoScript, subject: int) -> Candidate | None:
    """DO: "what did the X do", for an object that acts once."""
    own = script.events_of(subject)
    if len(own) != 1:
        return None
    event = own[0]
    others = [e for e in script.events if e.obj != subject]
    pools = _pools(others, event.kind, {}, lambda e: e.text())
    if pools is None:
        return None
    name = script.objects[subject].name
    return Candidate(
        qtype="DO",
        subject=subject,
        body=f"what did the {name} do",
        answer_text=event.text(),
        answer_kind=event.kind,
        evidence_events=(event.index,),
        reference_events=(),
        segments_ds=((event.start_ds, event.end_ds),),
        distractor_pools=pools,
    )


def temporal_candidates(script: VideoScript, subject: int) -> list[Candidate]:
    """TN / TP about a repeat actor, relative to each other object's event."""
    own = script.events_of(subject)
    if len(own) < 2:
        return []
    names = {o.index: o.name for o in script.objects}
    candidates = []
    for reference in script.events:
        if reference.obj == subject:
            continue
        after = [e for e in own if e.start_ds >= reference.end_ds]
        before = [e for e in own if e.end_ds <= reference.start_ds]
        for qtype, relation, pick in (("TN", "after", after[:1]), ("TP", "before", before[-1:])):
            if not pick:
                continue
            answer = pick[0]
            fixed = {e.kind: e for e in own if e.index != answer.index}
            others = [e for e in script.events if e.obj != subject]
            pools = _pools(others, answer.kind, fixed, lambda e: e.text(), avoid={reference.index})
            if pools is None:
                continue
            candidates.append(
                Candidate(
                    qtype=qtype,
                    subject=subject,
                    body=f"what did the {names[subject]} do {relation} the {names[reference.obj]} {reference.text()}",
                    answer_text=answer.text(),
                    answer_kind=answer.kind,
                    evidence_events=(answer.index,),
                    reference_events=(reference.index,),
                    segments_ds=((answer.start_ds, answer.end_ds),),
                    distractor_pools=pools,
                )
            )
    return candidates


def causal_candidates(script: VideoScript, subject: int) -> list[Candidate]:
    """CW about a repeat actor: "why did X <base>", answered by the event right before X's."""
    own = script.events_of(subject)
    if len(own) < 2:
        return []
    names = {o.index: o.name for o in script.objects}

    def because(event: Event) -> str:
        return f"because the {names[event.obj]} {event.text()}"

    candidates = []
    for effect in own:
        if effect.index == 0:
            continue
        cause = script.events[effect.index - 1]
        outside = [e for e in script.events if e.index not in (cause.index, effect.index)]
        pools = _pools(outside, cause.kind, {}, because)
        if pools is None:
            continue
        candidates.append(
            Candidate(
                qtype="CW",
                subject=subject,
                body=f"why did the {names[subject]} {effect.text('base')}",
                answer_text=because(cause),
                answer_kind=cause.kind,
                evidence_events=(cause.index,),
                reference_events=(effect.index,),
                segments_ds=((cause.start_ds, cause.end_ds),),
                distractor_pools=pools,
            )
        )
    return candidates


def candidates_for(script: VideoScript, subject: int) -> dict[str, list[Candidate]]:
    """Every well-posed question about `subject`, by type (DO for single actors, else TN/TP/CW)."""
    what = what_candidate(script, subject)
    if what is not None:
        return {"DO": [what]}
    grouped: dict[str, list[Candidate]] = {t: [] for t in COMPOSITIONAL_TYPES}
    for candidate in temporal_candidates(script, subject) + causal_candidates(script, subject):
        grouped[candidate.qtype].append(candidate)
    return {t: c for t, c in grouped.items() if c}


def choose_candidate(rng: np.random.Generator, by_type: dict[str, list[Candidate]]) -> Candidate:
    """A type uniformly among those available, then a candidate of it uniformly."""
    types = [t for t in TYPES if by_type.get(t)]
    qtype = types[int(rng.integers(len(types)))]
    pool = by_type[qtype]
    return pool[int(rng.integers(len(pool)))]


def finalize(rng: np.random.Generator, candidate: Candidate, qid: int, lead_in: str, cue: str) -> Question:
    """Draw one wrong option per pool, put the answer at a uniform position, add the lead-in."""
    wrong_kinds = [k for k in KIND_NAMES if k != candidate.answer_kind]
    wrong = [pool[int(rng.integers(len(pool)))] for pool in candidate.distractor_pools]
    order = rng.permutation(len(wrong))
    wrong = [wrong[int(i)] for i in order]
    wrong_kinds = [wrong_kinds[int(i)] for i in order]
    answer = int(rng.integers(NUM_OPTIONS))
    options: list[tuple[str, tuple[int, ...]]] = [(text, (event,)) for text, event in wrong]
    options.insert(answer, (candidate.answer_text, candidate.evidence_events))
    kinds = list(wrong_kinds)
    kinds.insert(answer, candidate.answer_kind)
    texts = tuple(text for text, _ in options)
    if len(set(texts)) != NUM_OPTIONS:
        raise AssertionError(f"options are not distinct: {texts}")
    return Question(
        qid=qid,
        qtype=candidate.qtype,
        subject=candidate.subject,
        text=f"{lead_in} {candidate.body}",
        options=texts,
        answer=answer,
        answer_kind=candidate.answer_kind,
        option_kinds=tuple(kinds),
        lead_in=lead_in,
        cue=cue,
        segments_ds=candidate.segments_ds,
        evidence_events=candidate.evidence_events,
        reference_events=candidate.reference_events,
        option_events=tuple(events for _, events in options),
    )
