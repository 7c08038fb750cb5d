"""Write the benchmark's annotation files in the NExT-GQA file format, plus sidecars and a card.

Files under the output folder (formats match doc-doc/NExT-GQA's `datasets/nextgqa/`):
- `{split}.csv`: `video_id,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4`; answer is
  the index 0-4 of the right option; qid an integer unique within its video; no quoting (no commas).
- `gsub_{split}.json`: `{video_id: {"duration": s, "location": {qid: [[start_s, end_s], ...]}, "fps": f}}`.
- `map_vid_vidorID.json`: `{video_id: "<folder>/<video_id>"}`; videos at `videos/<folder>/<video_id>.mp4`.
Sidecars (this generator only):
- `events_{split}.json`: every video's objects, events and cues, and per question its type, subject,
  answer kind, nuisances and the events each option names (what the tests and the oracle features read).
- `confounders_{split}.csv`: `qid,video_id,answer_category,visual_nuisance,visual_agrees,
  language_nuisance,language_agrees` (agrees: 1/0).
- `dataset.json` (params, counts, measured agreement rates) and `README.md` (the dataset card).

Every file is a pure function of the dataset: same params -> byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

from pipeline.data.synthetic.dataset import GENERATOR_VERSION, SyntheticDataset, VideoRecord, agreement_rates
from pipeline.data.synthetic.presets import OOD_SPLITS, SPLITS
from pipeline.data.synthetic.questions import TYPES
from pipeline.data.synthetic.vocabulary import EVENT_KINDS, KIND_NAMES, paired_cue, paired_lead_in

GENERATOR_NAME = "cra-synthetic-videoqg"
QA_COLUMNS = ("video_id", "frame_count", "width", "height", "question", "answer", "qid", "type") + tuple(
    f"a{i}" for i in range(5)
)
CONFOUNDER_COLUMNS = (
    "qid",
    "video_id",
    "answer_category",
    "visual_nuisance",
    "visual_agrees",
    "language_nuisance",
    "language_agrees",
)


def _csv_text(columns: tuple[str, ...], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def qa_csv(dataset: SyntheticDataset, split: str) -> str:
    cfg = dataset.config
    rows = []
    for video in dataset.videos[split]:
        for q in video.questions:
            for text in (q.text, *q.options):
                if "," in text or '"' in text or "\n" in text:
                    raise AssertionError(f"text would need CSV quoting: {text!r}")
            frame_count = video.script.frame_count
            rows.append(
                [video.video_id, frame_count, cfg.width, cfg.height, q.text, q.answer, q.qid, q.qtype, *q.options]
            )
    return _csv_text(QA_COLUMNS, rows)


def gsub_json(dataset: SyntheticDataset, split: str) -> str:
    gsub = {
        video.video_id: {
            "duration": video.script.duration_s,
            "location": {str(q.qid): q.segments_s for q in video.questions},
            "fps": video.script.fps,
        }
        for video in dataset.videos[split]
    }
    return json.dumps(gsub)


def video_map_json(dataset: SyntheticDataset) -> str:
    return json.dumps({video.video_id: video.relative_path for video in dataset.all_videos()})


def _events_record(video: VideoRecord) -> dict:
    script = video.script
    return {
        "duration": script.duration_s,
        "fps": script.fps,
        "pad": script.pad_ds / 10,
        "objects": [
            {
                "index": o.index,
                "name": o.name,
                "colour": o.colour,
                "shape": o.shape,
                "cell": o.cell,
                "y_offset": o.y_offset,
            }
            for o in script.objects
        ],
        "events": [
            {
                "index": e.index,
                "object": e.obj,
                "kind": e.kind,
                "start": e.start_s,
                "end": e.end_s,
                "text": e.text(),
            }
            for e in script.events
        ],
        "cues": [{"object": c.obj, "colour": c.colour, "start": c.start_s, "end": c.end_s} for c in script.cues],
        "questions": {
            str(q.qid): {
                "type": q.qtype,
                "subject": q.subject,
                "answer_kind": q.answer_kind,
                "option_kinds": list(q.option_kinds),
                "cue": q.cue,
                "lead_in": q.lead_in,
                "reference_events": list(q.reference_events),
                "evidence_events": list(q.evidence_events),
                "option_events": [list(events) for events in q.option_events],
            }
            for q in video.questions
        },
    }


def events_json(dataset: SyntheticDataset, split: str) -> str:
    return json.dumps({video.video_id: _events_record(video) for video in dataset.videos[split]})


def confounders_csv(dataset: SyntheticDataset, split: str) -> str:
    rows = []
    for video in dataset.videos[split]:
        for q in video.questions:
            rows.append(
                [
                    q.qid,
                    video.video_id,
                    q.answer_kind,
                    q.cue,
                    int(q.cue == paired_cue(q.answer_kind)),
                    q.lead_in,
                    int(q.lead_in == paired_lead_in(q.answer_kind)),
                ]
            )
    return _csv_text(CONFOUNDER_COLUMNS, rows)


def summary(dataset: SyntheticDataset, total_videos: int | None) -> dict:
    cfg = dataset.config
    rates = agreement_rates(dataset)
    splits = {}
    for split in SPLITS:
        videos = dataset.videos[split]
        types = Counter(q.qtype for v in videos for q in v.questions)
        splits[split] = {
            "videos": len(videos),
            "questions": sum(len(v.questions) for v in videos),
            "types": {t: types.get(t, 0) for t in TYPES},
            "ood": split in OOD_SPLITS,
            "agreement": rates[split],
        }
    return {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "preset": cfg.preset,
        "seed": cfg.seed,
        "total_videos": total_videos,
        "width": cfg.width,
        "height": cfg.height,
        "rho_visual": cfg.rho_visual,
        "rho_language": cfg.rho_language,
        "splits": splits,
        "pairing": {kind: {"cue": paired_cue(kind), "lead_in": paired_lead_in(kind)} for kind in KIND_NAMES},
    }


def dataset_card(info: dict) -> str:
    lines = [
        "# Synthetic confounded video question grounding benchmark",
        "",
        f"Generated by `{GENERATOR_NAME}` {info['generator_version']} (preset `{info['preset']}`, seed {info['seed']}, "
        f"{info['width']}x{info['height']} px). Regenerate with `cra generate` / `dvc repro generate`.",
        "",
        "Each video shows six coloured shapes on a plain background, each on screen in a cell of a 2 x 2 grid around "
        "the times it acts. One at a time, a shape grows, shrinks, glows, turns pale or splits in two for a while, "
        "then reverts; most shapes act once, a few (repeat actors) twice. Every shape is the subject of one question: "
        "what did it do (DO, for shapes acting once), what did it do after / before another shape did something "
        "(TN / TP), or why did it do something (CW: answered by the event right before). The four wrong options are "
        "events of the same video at other times, one per other event kind, so answering needs the evidence; every "
        "question has its evidence segment in seconds.",
        "",
        "Planted confounders, per question, tied to the right answer's event kind: a coloured backdrop behind the "
        "question's subject, shown for a while outside the evidence (visual), and the question's opening words "
        "(linguistic). With probability rho the value is the one paired with the answer's kind, else uniform over the "
        f"five (rho_visual = {info['rho_visual']}, rho_language = {info['rho_language']}) in `train`, `val` and "
        "`test_iid`; `test_ood` draws both uniformly (rho = 0). P(agree) = rho + (1 - rho) / 5.",
        "",
        "| kind | options | backdrop cue | lead-in |",
        "|---|---|---|---|",
    ]
    for kind in EVENT_KINDS:
        pair = info["pairing"][kind.name]
        lines.append(f"| {kind.name} | {kind.past} | {pair['cue']} | {pair['lead_in']} |")
    lines += [
        "",
        "| split | videos | questions | DO | TN | TP | CW | visual agreement | language agreement |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for split, s in info["splits"].items():
        t = s["types"]
        lines.append(
            f"| {split} | {s['videos']} | {s['questions']} | {t['DO']} | {t['TN']} | {t['TP']} | {t['CW']} "
            f"| {s['agreement']['visual']:.3f} | {s['agreement']['language']:.3f} |"
        )
    lines += [
        "",
        "Files (NExT-GQA format): `{split}.csv`, `gsub_{split}.json`, `map_vid_vidorID.json`, "
        "`videos/<folder>/<video_id>.mp4`.",
        "Sidecars: `events_{split}.json` (timelines, cues, and the event each option names), `confounders_{split}.csv` "
        "(the planted nuisance values per question and whether they agree with the answer), `dataset.json`.",
        "",
    ]
    return "\n".join(lines)


def write_annotations(dataset: SyntheticDataset, out_dir: Path, total_videos: int | None = None) -> dict:
    """Write every annotation file (not the videos) into `out_dir`; return dataset.json's content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"map_vid_vidorID.json": video_map_json(dataset)}
    for split in SPLITS:
        files[f"{split}.csv"] = qa_csv(dataset, split)
        files[f"gsub_{split}.json"] = gsub_json(dataset, split)
        files[f"events_{split}.json"] = events_json(dataset, split)
        files[f"confounders_{split}.csv"] = confounders_csv(dataset, split)
    info = summary(dataset, total_videos)
    files["dataset.json"] = json.dumps(info, indent=2) + "\n"
    files["README.md"] = dataset_card(info)
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8", newline="\n")
    return info
