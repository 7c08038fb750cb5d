"""The whole benchmark as data (no rendering): videos' scripts, questions and planted confounders.

Per video: a script (timeline.py), one question per object (questions.py), and per question its two
nuisances, both tied to the question's right-answer kind c:
- visual: the backdrop cue behind the question's subject (vocabulary.CUE_COLOURS), shown during one
  of the subject's pads (on screen, normal look) next to the evidence, never during the evidence;
- linguistic: the question's lead-in words (vocabulary.LEAD_INS).
Each nuisance is drawn as: with probability rho (`synthetic.rho_visual` / `rho_language`) the value
paired with c, otherwise uniformly among all 5 values (the paired one included). So rho is the
strength of the planted correlation: rho = 0 makes the nuisance independent of the answer
(agreement 1/5), rho = 1 makes it always agree; in general P(agree) = rho + (1 - rho) / 5. In
`test_ood` both nuisances are drawn as with rho = 0, whatever the params.

The same uniform draws are made whatever rho is, so changing rho changes only nuisance values:
scripts, questions, options and cue times stay identical (a rho sweep is a controlled experiment).

Determinism: video k of split s draws everything from
`np.random.default_rng(SeedSequence(seed, spawn_key=(s, k)))`, in a fixed order, so the same
params give the same benchmark, and a video does not change when other videos are added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from pipeline.config import SyntheticConfig
from pipeline.data.synthetic.presets import OOD_SPLITS, SPLITS, Preset, get_preset
from pipeline.data.synthetic.questions import Question, candidates_for, choose_candidate, finalize
from pipeline.data.synthetic.timeline import (
    NUM_CELLS,
    NUM_OBJECTS,
    Cue,
    NoCellError,
    VideoScript,
    cue_windows,
    sample_script,
)
from pipeline.data.synthetic.vocabulary import CUE_NAMES, LEAD_INS, paired_cue, paired_lead_in

MAX_SCRIPT_ATTEMPTS = 100
GENERATOR_VERSION = "2.0.0"  # 2.0: per-question answer kinds, local backdrop cues, 6 objects acting in turn


@dataclass(frozen=True)
class VideoRecord:
    split: str
    index: int  # position within the split
    video_id: str  # 10 digits: split number (1-4) then the index
    folder: str  # 4 digits, 100 videos each; the video lies at videos/<folder>/<video_id>.mp4
    script: VideoScript  # with its cues
    questions: tuple[Question, ...]

    @property
    def relative_path(self) -> str:
        return f"{self.folder}/{self.video_id}"


@dataclass(frozen=True)
class SyntheticDataset:
    config: SyntheticConfig
    preset: Preset
    videos: dict[str, tuple[VideoRecord, ...]]  # per split, in SPLITS order

    def all_videos(self) -> list[VideoRecord]:
        return [video for split in SPLITS for video in self.videos[split]]


def video_id(split: str, index: int) -> str:
    return f"{SPLITS.index(split) + 1}{index:09d}"


def draw_nuisance(rng: np.random.Generator, values: tuple[str, ...], paired: str, rho: float, ood: bool) -> str:
    """`paired` with probability rho (never when `ood`), else uniform over `values`.

    Two draws are made in every case, so the rest of the video's randomness does not depend on rho.
    """
    forced = rng.random() < rho
    uniform = values[int(rng.integers(len(values)))]
    return paired if forced and not ood else uniform


def _cue_window(rng: np.random.Generator, script: VideoScript, question: Question, num_frames: int) -> tuple[int, int]:
    # At least one spacing of the preset's T-frame uniform sampling long, so every cue is in a sampled frame.
    spacing = math.ceil(script.duration_ds / num_frames)
    windows = cue_windows(script, question.subject, question.segments_ds, spacing)
    if not windows:
        raise AssertionError(f"no pad of object {question.subject} clear of the evidence {question.segments_ds}")
    return windows[int(rng.integers(len(windows)))]


def build_video(cfg: SyntheticConfig, preset: Preset, split: str, index: int) -> VideoRecord:
    """One video's script, questions and nuisances; a pure function of (cfg, preset, split, index)."""
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(SPLITS.index(split), index)))
    ood = split in OOD_SPLITS
    duration_s = int(rng.integers(preset.min_duration_s, preset.max_duration_s + 1))
    fps = int(preset.fps_choices[int(rng.integers(len(preset.fps_choices)))])
    weights = np.asarray(preset.repeat_actor_weights, dtype=np.float64)
    repeat_actors = int(rng.choice(len(weights), p=weights / weights.sum()))
    for _ in range(MAX_SCRIPT_ATTEMPTS):
        try:
            script = sample_script(rng, duration_s, fps, repeat_actors, preset.num_frames)
            break
        except NoCellError:
            continue
    else:
        raise AssertionError(
            f"{split} video {index}: no timeline fits the {NUM_CELLS} cells in {MAX_SCRIPT_ATTEMPTS} attempts"
        )
    order = rng.permutation(NUM_OBJECTS)  # question ids in a random order of subjects
    questions: list[Question] = []
    cues: list[Cue] = []
    for qid, subject in enumerate(int(i) for i in order):
        candidate = choose_candidate(rng, candidates_for(script, subject))
        lead_in = draw_nuisance(rng, LEAD_INS, paired_lead_in(candidate.answer_kind), cfg.rho_language, ood)
        cue = draw_nuisance(rng, CUE_NAMES, paired_cue(candidate.answer_kind), cfg.rho_visual, ood)
        question = finalize(rng, candidate, qid, lead_in, cue)
        start, end = _cue_window(rng, script, question, preset.num_frames)
        questions.append(question)
        cues.append(Cue(obj=subject, colour=cue, start_ds=start, end_ds=end))
    script = replace(script, cues=tuple(sorted(cues, key=lambda c: (c.start_ds, c.obj))))
    vid = video_id(split, index)
    return VideoRecord(
        split=split,
        index=index,
        video_id=vid,
        folder=f"{SPLITS.index(split) + 1}{index // 100:03d}",
        script=script,
        questions=tuple(questions),
    )


def build_split(cfg: SyntheticConfig, split: str, num_videos: int) -> tuple[VideoRecord, ...]:
    """The first `num_videos` videos of one split, without rendering (a few ms a video)."""
    preset = get_preset(cfg.preset)
    return tuple(build_video(cfg, preset, split, i) for i in range(num_videos))


def build_dataset(cfg: SyntheticConfig, total_videos: int | None = None) -> SyntheticDataset:
    """Every split's videos and questions, without rendering (fast: use it for statistics)."""
    preset = get_preset(cfg.preset)
    sizes = preset.split_sizes(total_videos)
    videos = {split: build_split(cfg, split, sizes[split]) for split in SPLITS}
    return SyntheticDataset(config=cfg, preset=preset, videos=videos)


def agreement_rates(dataset: SyntheticDataset) -> dict[str, dict[str, float]]:
    """Per split: the fraction of questions whose visual / linguistic nuisance is the answer's pair."""
    rates = {}
    for split in SPLITS:
        pairs = [
            (q.cue == paired_cue(q.answer_kind), q.lead_in == paired_lead_in(q.answer_kind))
            for video in dataset.videos[split]
            for q in video.questions
        ]
        n = max(1, len(pairs))
        rates[split] = {
            "visual": round(sum(v for v, _ in pairs) / n, 4),
            "language": round(sum(lang for _, lang in pairs) / n, 4),
        }
    return rates


def expected_agreement(rho: float, values: int = len(CUE_NAMES)) -> float:
    """P(nuisance == the answer's paired value) for strength rho."""
    return rho + (1.0 - rho) / values
