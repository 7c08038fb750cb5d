"""Five-way multiple-choice questions with ground-truth evidence, from a video's script.

Question families (NExT-QA's type codes), X the subject object, Y another object:
- TN "what did X do after Y <past>": X's first event that starts 0..D/10 after Y's event ends
  (X busy with nothing that straddles Y's end).
- TP "what did X do before Y <past>": X's last event that ends 0..D/10 before Y's event starts
  (nothing of X straddles Y's start).
- TC "what did X do while Y <state>": X's only event overlapping Y's, by >= half the shorter one.
- CW "why did X <base>": X's event is the effect of a causal link (timeline.py's rule) and the only
  one of X with that wording; the answer is "because Y <past>", the cause.
A reference "Y <past>" may happen several times; the question is kept only if every occurrence
leads to the same answer wording, and then its evidence has one segment per occurrence.

Evidence: the answer event(s) for TN/TP/TC; the span from the cause's start to the effect's end for
CW. Wrong options are events of the same video *outside* every evidence segment, one per other event
kind: X's own other events for TN/TP/TC (so X did every option at some time), and other objects'
events for CW. A model that ignores *when* cannot tell the right option from the wrong ones.

`candidates_by_kind` enumerates every well-posed question of a script (a pure function, no RNG);
the dataset then keeps only those whose right answer has the video's target kind (dataset.py), draws
one wrong option from each pool, and puts the right one at a uniform position in 0-4.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.data.synthetic.timeline import Event, VideoScript
from pipeline.data.synthetic.vocabulary import KIND_NAMES

NUM_OPTIONS = 5
TYPES = ("CW", "TN", "TP", "TC")
TEMPORAL_TEMPLATES = {
    "TN": ("after", "past"),
    "TP": ("before", "past"),
    "TC": ("while", "state"),
}


@dataclass(frozen=True)
class Candidate:
    """A question before its wrong options, wording nuisance and option order are drawn."""

    qtype: str
    subject: int  # SceneObject.index of X
    body: str  # the question after its lead-in, e.g. "what did the red circle do after ..."
    answer_text: str
    answer_kind: str
    evidence_events: tuple[int, ...]  # events the right option names (the cause, for CW)
    reference_events: tuple[int, ...]  # Y's occurrences (TN/TP/TC) or X's effect (CW)
    segments_ds: tuple[tuple[int, int], ...]  # ground-truth evidence, sorted, deciseconds
    # One pool per event kind other than the answer's: (option text, event index) choices, all
    # outside every evidence segment; a wrong option is drawn from each.
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
    lead_in: str  # the linguistic nuisance value
    segments_ds: tuple[tuple[int, int], ...]
    evidence_events: tuple[int, ...]
    reference_events: tuple[int, ...]
    option_events: tuple[tuple[int, ...], ...]  # per option, the event(s) its text names

    @property
    def segments_s(self) -> list[list[float]]:
        return [[start / 10, end / 10] for start, end in self.segments_ds]


def _temporal_answer(qtype: str, ref: Event, own: list[Event], max_gap_ds: int) -> Event | None:
    """X's event answering `qtype` relative to one reference occurrence, or None if ambiguous."""
    if qtype == "TN":
        later = [e for e in own if e.start_ds >= ref.end_ds]
        if not later:
            return None
        answer = min(later, key=lambda e: e.start_ds)
        straddles = any(e.start_ds < ref.end_ds < e.end_ds for e in own)
        return answer if answer.start_ds - ref.end_ds <= max_gap_ds and not straddles else None
    if qtype == "TP":
        earlier = [e for e in own if e.end_ds <= ref.start_ds]
        if not earlier:
            return None
        answer = max(earlier, key=lambda e: e.end_ds)
        straddles = any(e.start_ds < ref.start_ds < e.end_ds for e in own)
        return answer if ref.start_ds - answer.end_ds <= max_gap_ds and not straddles else None
    overlapping = [e for e in own if e.overlap_ds(ref) > 0]
    if len(overlapping) != 1:
        return None
    answer = overlapping[0]
    return answer if 2 * answer.overlap_ds(ref) >= min(answer.length_ds, ref.length_ds) else None


def _distractor_pools(
    pool: list[Event], answer_kind: str, segments: tuple[tuple[int, int], ...], text_of: Callable[[Event], str]
) -> tuple[tuple[tuple[str, int], ...], ...] | None:
    """Per kind other than `answer_kind`, the events of `pool` outside every segment (None if one is empty)."""
    pools = []
    for kind in KIND_NAMES:
        if kind == answer_kind:
            continue
        outside = tuple(
            (text_of(e), e.index)
            for e in pool
            if e.kind == kind and all(e.end_ds <= start or e.start_ds >= end for start, end in segments)
        )
        if not outside:
            return None
        pools.append(outside)
    return tuple(pools)


def _merge_segments(events: list[Event]) -> tuple[tuple[int, int], ...]:
    return tuple(sorted({(e.start_ds, e.end_ds) for e in events}))


def temporal_candidates(script: VideoScript) -> list[Candidate]:
    """Every well-posed TN/TP/TC question of the video, whatever its answer kind."""
    max_gap_ds = script.duration_ds // 10
    candidates = []
    for x in script.objects:
        own = script.events_of(x.index)
        for y in script.objects:
            if y.index == x.index:
                continue
            # Y's events grouped by wording, in first-occurrence order (dicts keep insertion order).
            references: dict[str, list[Event]] = defaultdict(list)
            for event in script.events_of(y.index):
                references[event.text("past")].append(event)
            for occurrences in references.values():
                for qtype, (relation, form) in TEMPORAL_TEMPLATES.items():
                    answers = [_temporal_answer(qtype, ref, own, max_gap_ds) for ref in occurrences]
                    if any(a is None for a in answers) or len({a.text() for a in answers}) != 1:
                        continue
                    segments = _merge_segments(answers)
                    pools = _distractor_pools(own, answers[0].kind, segments, lambda e: e.text())
                    if pools is None:
                        continue
                    candidates.append(
                        Candidate(
                            qtype=qtype,
                            subject=x.index,
                            body=f"what did the {x.name} do {relation} the {y.name} {occurrences[0].text(form)}",
                            answer_text=answers[0].text(),
                            answer_kind=answers[0].kind,
                            evidence_events=tuple(sorted({a.index for a in answers})),
                            reference_events=tuple(r.index for r in occurrences),
                            segments_ds=segments,
                            distractor_pools=pools,
                        )
                    )
    return candidates


def causal_candidates(script: VideoScript) -> list[Candidate]:
    """Every well-posed CW question of the video (one per causal link at most)."""
    names = {o.index: o.name for o in script.objects}

    def because(event: Event) -> str:
        return f"because the {names[event.obj]} {event.text()}"

    candidates = []
    for cause_index, effect_index in script.causal_links:
        cause, effect = script.events[cause_index], script.events[effect_index]
        own_texts = [e.text() for e in script.events_of(effect.obj)]
        if own_texts.count(effect.text()) != 1:
            continue  # "why did X <base>" would not say which of X's events
        segments = ((cause.start_ds, effect.end_ds),)
        others = [e for e in script.events if e.obj != effect.obj]
        pools = _distractor_pools(others, cause.kind, segments, because)
        if pools is None:
            continue
        candidates.append(
            Candidate(
                qtype="CW",
                subject=effect.obj,
                body=f"why did the {names[effect.obj]} {effect.text('base')}",
                answer_text=because(cause),
                answer_kind=cause.kind,
                evidence_events=(cause.index,),
                reference_events=(effect.index,),
                segments_ds=segments,
                distractor_pools=pools,
            )
        )
    return candidates


def candidates_by_kind(script: VideoScript) -> dict[str, list[Candidate]]:
    """All well-posed questions of the video, grouped by the kind of their right answer."""
    grouped: dict[str, list[Candidate]] = {kind: [] for kind in KIND_NAMES}
    for candidate in causal_candidates(script) + temporal_candidates(script):
        grouped[candidate.answer_kind].append(candidate)
    return grouped


def select_candidates(rng: np.random.Generator, candidates: list[Candidate], count: int) -> list[Candidate]:
    """Up to `count` candidates, round-robin over the types (CW first, the rarest) to mix them."""
    queues: dict[str, list[Candidate]] = {}
    for qtype in TYPES:
        of_type = [c for c in candidates if c.qtype == qtype]
        queues[qtype] = [of_type[int(i)] for i in rng.permutation(len(of_type))]
    chosen: list[Candidate] = []
    while len(chosen) < count and any(queues.values()):
        for qtype in TYPES:
            if queues[qtype] and len(chosen) < count:
                chosen.append(queues[qtype].pop(0))
    return chosen


def finalize(rng: np.random.Generator, candidate: Candidate, qid: int, lead_in: str) -> Question:
    """Draw one wrong option per pool, put the answer at a uniform position, add the lead-in."""
    wrong = [pool[int(rng.integers(len(pool)))] for pool in candidate.distractor_pools]
    wrong = [wrong[int(i)] for i in rng.permutation(len(wrong))]
    answer = int(rng.integers(NUM_OPTIONS))
    options: list[tuple[str, tuple[int, ...]]] = [(text, (event,)) for text, event in wrong]
    options.insert(answer, (candidate.answer_text, candidate.evidence_events))
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
        lead_in=lead_in,
        segments_ds=candidate.segments_ds,
        evidence_events=candidate.evidence_events,
        reference_events=candidate.reference_events,
        option_events=tuple(events for _, events in options),
    )
