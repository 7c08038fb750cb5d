"""Reading the generator's own records back: the `events_{split}.json` sidecars of a generated benchmark.

`read_scripts` rebuilds every video's script (objects, events, cues), which the oracle features are drawn
from; `read_question_nuisances` gives, per question, the event kind of each option and the kinds its two
planted nuisances are paired with, which the evaluation's shortcut share needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.synthetic.timeline import Cue, Event, SceneObject, VideoScript
from pipeline.data.synthetic.vocabulary import kind_of_cue, kind_of_lead_in
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class QuestionNuisances:
    option_kinds: tuple[str, ...]  # the event kind each option names
    visual_kind: str  # the kind the question's backdrop cue colour is paired with
    language_kind: str  # the kind the question's lead-in is paired with


def _records(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: cannot read the generator's records ({err}); re-run `generate`") from None


def read_scripts(annotation_dir: str | Path) -> dict[str, VideoScript]:
    """Every video's script from the `events_{split}.json` sidecars the generator wrote in `annotation_dir`."""
    scripts = {}
    for path in sorted(Path(annotation_dir).glob("events_*.json")):
        for video_id, record in _records(path).items():
            scripts[video_id] = script_from_record(record)
    return scripts


def script_from_record(record: dict) -> VideoScript:
    """The VideoScript of one `events_{split}.json` entry (what the generator wrote)."""

    def ds(seconds: float) -> int:
        return int(round(float(seconds) * 10))

    objects = tuple(
        SceneObject(index=o["index"], colour=o["colour"], shape=o["shape"], cell=o["cell"], y_offset=o["y_offset"])
        for o in record["objects"]
    )
    events = tuple(
        Event(index=e["index"], obj=e["object"], kind=e["kind"], start_ds=ds(e["start"]), end_ds=ds(e["end"]))
        for e in record["events"]
    )
    cues = tuple(
        Cue(obj=c["object"], colour=c["colour"], start_ds=ds(c["start"]), end_ds=ds(c["end"])) for c in record["cues"]
    )
    return VideoScript(
        duration_s=int(record["duration"]),
        fps=int(record["fps"]),
        objects=objects,
        events=events,
        pad_ds=int(record["pad"] * 10 + 0.5),
        cues=cues,
    )


def read_question_nuisances(annotation_dir: str | Path, split: str) -> dict[tuple[str, str], QuestionNuisances]:
    """`{(video_id, qid): QuestionNuisances}` of one split, from `events_{split}.json`."""
    path = Path(annotation_dir) / f"events_{split}.json"
    nuisances = {}
    for video_id, record in _records(path).items():
        for qid, question in record["questions"].items():
            nuisances[(video_id, qid)] = QuestionNuisances(
                option_kinds=tuple(question["option_kinds"]),
                visual_kind=kind_of_cue(question["cue"]),
                language_kind=kind_of_lead_in(question["lead_in"]),
            )
    return nuisances
