"""Model inputs from the pipeline's artifacts: QA table + visual, text and confounder features.

Shape notation: N questions of a split, A options, T frames, Dv frame width, Lq / La question /
option tokens, Dt text width, Kv / Kl dictionary sizes, G = 8 graph nodes.

Features stay in their zero-copy numpy arrays; a split is a set of row indices into them, and a
batch gathers rows (`make_batch`), so memory is the artifacts' size, not the number of questions x A.

Training batches also carry what only training needs (`TrainingInputs`): the question choices of the
VQ loss (`QuestionSampler`: the true question and sampled negatives, a share of them from the same
video, as the official data loader's `qsns_id` / `qsns_token_ids`), and the ground-truth frames of the
questions whose grounding is supervised (`train.grounding_supervision`).

Every question a split loses is counted by reason (`SplitQuestions.dropped`, `SplitQuestions.counts`):
its video was unusable at `prepare` (`video_<status>`: missing, empty, corrupt, timeout, refused,
mismatched; `video_unusable` without the manifest's statuses), or it had no frames (`no_frames`: the
video probed fine but `visual_features` could not decode it, metadata `skipped_videos`); a question that
is answered but has no ground-truth segment is left out of the grounding metrics (`no_grounding_labels`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from models.cra import CRABatch
from models.eci import LanguageDictionary, VisualDictionary
from pipeline.artifacts import schemas
from pipeline.artifacts.confounders import expected_confounder_metadata, read_confounders
from pipeline.artifacts.parquet import read_table
from pipeline.artifacts.text_features import TextFeatures, expected_text_metadata, read_text_features
from pipeline.artifacts.visual_features import VisualFeatures, expected_visual_metadata, read_visual_features
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger

log = get_logger("batches")


@dataclass(frozen=True)
class FeatureBank:
    """Every feature artifact a model needs, checked against the params that read them."""

    visual: VisualFeatures
    text: TextFeatures
    visual_dictionary: VisualDictionary | None
    language_dictionary: LanguageDictionary | None

    @property
    def visual_dim(self) -> int:
        return int(self.visual.features.shape[-1])

    @property
    def text_dim(self) -> int:
        return self.text.dim

    def provenance(self) -> dict[str, Any]:
        """What the features were made with (stored with checkpoints and metrics)."""
        meta = self.visual.metadata
        return {
            "visual_model": meta.get("model"),
            "visual_pretrained": meta.get("pretrained"),
            "num_frames": meta.get("num_frames"),
            "text_model": self.text.metadata.get("model"),
        }


def load_feature_bank(params: Any, with_dictionaries: bool = True) -> FeatureBank:
    """Read the visual and text features (and the confounder dictionaries when ECI needs them)."""
    visual = read_visual_features(params.paths.visual_features, expected_visual_metadata(params))
    text = read_text_features(params.paths.text_features, expected_text_metadata(params))
    visual_dictionary = language_dictionary = None
    needs_dictionaries = params.model.variant == "cra" and (params.eci.visual or params.eci.linguistic)
    if with_dictionaries and needs_dictionaries:
        confounders = read_confounders(params.paths.confounders, expected_confounder_metadata(params))
        visual_dictionary = VisualDictionary(
            torch.from_numpy(np.array(confounders.visual_centroids, dtype=np.float32)),
            torch.from_numpy(np.array(confounders.visual_prior, dtype=np.float32)),
        )
        language_dictionary = LanguageDictionary(
            torch.from_numpy(np.array(confounders.language_prototypes, dtype=np.float32)),
            torch.from_numpy(np.array(confounders.language_prior, dtype=np.float32)),
        )
    return FeatureBank(visual, text, visual_dictionary, language_dictionary)


@dataclass(frozen=True)
class SplitQuestions:
    """The questions of one split that have features, as row indices into a FeatureBank."""

    split: str
    qids: list[str]  # (N,)
    video_ids: list[str]  # (N,)
    types: list[str]  # (N,)
    answers: np.ndarray  # (N,) int64
    segments: list[list[list[float]]]  # (N,) ground-truth [start_s, end_s] lists; may be empty
    durations: np.ndarray  # (N,) seconds (NaN when unknown)
    video_rows: np.ndarray  # (N,) rows of FeatureBank.visual
    question_rows: np.ndarray  # (N,) rows of FeatureBank.text.question
    option_rows: np.ndarray  # (N, A) rows of FeatureBank.text.option
    qa_rows: np.ndarray  # (N, A) rows of FeatureBank.text.qa
    frame_labels: np.ndarray  # (N, T) float32, 1 where a sampled frame lies in a ground-truth segment
    dropped: dict[str, int] = field(default_factory=dict)  # {reason: questions of the split left out}

    def __len__(self) -> int:
        return len(self.qids)

    @property
    def skipped_without_video(self) -> int:
        """Questions dropped because their video has no features (every reason of `dropped`)."""
        return sum(self.dropped.values())

    def counts(self) -> dict[str, Any]:
        """How many of the split's questions each number covers, and why the others are not in it:
        `n_total` (the split's questions), `n_scored` (answered: Acc@QA's denominator), `n_grounded` (with
        ground-truth segments: the grounding metrics' denominator), `dropped` `{reason: questions}` (each
        question under one reason; `no_grounding_labels` ones are answered but not grounded), so that
        n_total = n_scored + the video reasons and n_scored = n_grounded + no_grounding_labels."""
        unlabelled = sum(1 for segments in self.segments if not segments)
        dropped = dict(sorted(self.dropped.items()))
        if unlabelled:
            dropped["no_grounding_labels"] = unlabelled
        return {
            "n_total": len(self) + self.skipped_without_video,
            "n_scored": len(self),
            "n_grounded": len(self) - unlabelled,
            "dropped": dropped,
        }

    def subset(self, rows: np.ndarray) -> SplitQuestions:
        """The questions `rows` (n,) of this split, in that order (their own `dropped` is empty)."""

        def pick(values: list) -> list:
            return [values[i] for i in rows]

        return SplitQuestions(
            split=self.split,
            qids=pick(self.qids),
            video_ids=pick(self.video_ids),
            types=pick(self.types),
            answers=self.answers[rows],
            segments=pick(self.segments),
            durations=self.durations[rows],
            video_rows=self.video_rows[rows],
            question_rows=self.question_rows[rows],
            option_rows=self.option_rows[rows],
            qa_rows=self.qa_rows[rows],
            frame_labels=self.frame_labels[rows],
        )

    @property
    def num_options(self) -> int:
        return int(self.option_rows.shape[1])

    @property
    def keys(self) -> list[str]:
        """NExT-GQA result-file keys `<video_id>_<qid>`."""
        return [schemas.official_key(v, q) for v, q in zip(self.video_ids, self.qids, strict=True)]

    @property
    def has_grounding_labels(self) -> bool:
        return any(self.segments)

    def gsub(self) -> dict[str, Any]:
        """The split's grounding labels in NExT-GQA's gsub format (for `pipeline.evaluation.scoring.score`)."""
        labels: dict[str, Any] = {}
        for video_id, qid, segments, duration in zip(
            self.video_ids, self.qids, self.segments, self.durations, strict=True
        ):
            entry = labels.setdefault(video_id, {"duration": float(duration), "location": {}})
            if segments:
                entry["location"][qid] = segments
        return labels


def read_qa_table(params: Any) -> pa.Table:
    return read_table(params.paths.qa_table, schemas.QA)


def read_video_statuses(params: Any) -> dict[str, str]:
    """`{video_id: status}` of the video manifest (`prepare`'s verdict on each video, VIDEO_STATUSES)."""
    table = read_table(params.paths.video_manifest, schemas.VIDEO_MANIFEST, columns=["video_id", "status"])
    return dict(zip(table.column("video_id").to_pylist(), table.column("status").to_pylist(), strict=True))


def drop_reason(video_id: str, no_frames: set[str], statuses: dict[str, str] | None) -> str:
    """Why a video has no features: `no_frames` (it failed to decode at extraction), else `video_<status>`
    (`prepare` found it unusable), `video_unusable` without the statuses, `no_features` if it was usable."""
    if video_id in no_frames:
        return "no_frames"
    if statuses is None:
        return "video_unusable"
    status = statuses.get(video_id)
    return "no_features" if status in (None, "ok") else f"video_{status}"


def load_split(qa: pa.Table, split: str, bank: FeatureBank, statuses: dict[str, str] | None = None) -> SplitQuestions:
    """Select a split's questions and map each to its feature rows; questions without video features are
    dropped and counted by reason (`drop_reason`; `statuses`: the manifest's, see `read_video_statuses`)."""
    rows = qa.filter(pc.equal(qa.column("split"), split)).to_pydict()
    if not rows["qid"]:
        present = sorted(set(qa.column("split").to_pylist()))
        raise PipelineError(
            f"split {split!r} has no questions in the QA table (splits there: {present}); check data.*_split"
        )
    have_video = set(bank.visual.video_ids)
    keep = [i for i, video_id in enumerate(rows["video_id"]) if video_id in have_video]
    no_frames = {s["video_id"] for s in bank.visual.metadata.get("skipped_videos", [])}
    dropped = Counter(drop_reason(v, no_frames, statuses) for v in rows["video_id"] if v not in have_video)
    skipped = len(rows["qid"]) - len(keep)
    if skipped:
        log.warning(
            "%s: %d of %d questions skipped: their video has no features (%s; see the manifest)",
            split,
            skipped,
            len(rows["qid"]),
            ", ".join(f"{reason} {count}" for reason, count in sorted(dropped.items())),
        )
    if not keep:
        raise PipelineError(f"split {split!r}: none of its {len(rows['qid'])} questions has video features")
    pick = lambda column: [rows[column][i] for i in keep]  # noqa: E731
    options = pick("options")
    option_counts = {len(o) for o in options}
    if len(option_counts) != 1:
        raise PipelineError(
            f"split {split!r} mixes questions with {sorted(option_counts)} options; one count per split is expected"
        )
    questions = pick("question")
    text = bank.text
    durations = np.array([np.nan if d is None else d for d in pick("duration")], dtype=np.float64)
    video_rows = bank.visual.rows(pick("video_id"))
    segments = pick("segments")
    return SplitQuestions(
        split=split,
        qids=pick("qid"),
        video_ids=pick("video_id"),
        types=pick("type"),
        answers=np.asarray(pick("answer"), dtype=np.int64),
        segments=segments,
        durations=durations,
        video_rows=video_rows,
        question_rows=text.question.rows(questions),
        option_rows=np.stack([text.option.rows(o) for o in options]),
        qa_rows=np.stack([text.qa_rows(q, o) for q, o in zip(questions, options, strict=True)]),
        frame_labels=ground_truth_frames(np.asarray(bank.visual.timestamps)[video_rows], segments),
        dropped=dict(sorted(dropped.items())),
    )


def ground_truth_frames(timestamps: np.ndarray, segments: list[list[list[float]]]) -> np.ndarray:
    """(N, T) float32: 1 where frame t (at `timestamps[i, t]` s) lies in one of question i's segments.

    A frame at time t shows a segment [s, e] when s <= t < e (the frame shown at t is the last one that
    started by t); a question with no segment, or whose segments fall between sampled frames, has none.
    """
    labels = np.zeros(timestamps.shape, dtype=np.float32)  # (N, T)
    for i, question_segments in enumerate(segments):
        for start, end in question_segments:
            labels[i] = np.maximum(labels[i], (timestamps[i] >= start) & (timestamps[i] < end))
    return labels


class QuestionSampler:
    """The C = 1 + `negatives` question choices of the VQ loss for training questions.

    Choice 0 is the question itself; each negative is, with probability `same_video`, another question
    of the same video (a hard negative: telling them apart needs the grounding), else a question of any
    other video. A negative never has the same text as the true question (it could not be told apart).
    The official loader samples 4 negatives, 30 % of them from the same video.
    """

    def __init__(self, questions: SplitQuestions, negatives: int, same_video: float) -> None:
        if negatives < 1:
            raise ValueError(f"negatives must be >= 1, got {negatives}")
        self.questions = questions
        self.negatives = negatives
        self.same_video = same_video
        rows = questions.question_rows
        by_video: dict[str, list[int]] = {}
        for i, video_id in enumerate(questions.video_ids):
            by_video.setdefault(video_id, []).append(i)
        # Per question: the other questions of its video with another text.
        self._same = [
            np.array([j for j in by_video[v] if rows[j] != rows[i]], dtype=np.int64)
            for i, v in enumerate(questions.video_ids)
        ]
        if len(set(rows.tolist())) < 2:
            raise ValueError("the VQ loss needs at least two distinct questions in the training split")

    def choices(self, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, C) rows of the text features' question table for the questions `index` (B,)."""
        rows = self.questions.question_rows
        video_ids = self.questions.video_ids
        n = len(rows)
        out = np.empty((len(index), 1 + self.negatives), dtype=np.int64)
        for b, i in enumerate(index):
            out[b, 0] = rows[i]
            same = self._same[i]
            for k in range(1, 1 + self.negatives):
                if len(same) and rng.random() < self.same_video:
                    j = int(same[rng.integers(len(same))])
                else:
                    j = int(rng.integers(n))
                    while rows[j] == rows[i] or video_ids[j] == video_ids[i]:
                        j = int(rng.integers(n))
                out[b, k] = rows[j]
        return out


@dataclass(frozen=True)
class TrainingInputs:
    """What a training batch adds to the model inputs (see `make_batch`)."""

    question_choices: np.ndarray  # (B, C) rows of the question table, the true question first
    supervise_grounding: np.ndarray | None = None  # (B,) bool: rows whose frame weights are supervised


def _gather(array: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array[rows], dtype=np.float32))


def make_batch(
    bank: FeatureBank,
    questions: SplitQuestions,
    index: np.ndarray,
    training: TrainingInputs | None = None,
    frame_labels: bool = False,
) -> CRABatch:
    """Gather the batch `index` (B,) of a split into model inputs.

    `training` adds the VQ question choices and the grounding-supervision rows (training batches only);
    `frame_labels` attaches the ground-truth frames (grounding supervision, ground-truth pooling)."""
    text = bank.text
    B, A = len(index), questions.num_options
    video = _gather(bank.visual.features, questions.video_rows[index])  # (B, T, Dv)
    option_rows = questions.option_rows[index].reshape(-1)  # (B*A,)
    option_tokens = _gather(text.option.tokens, option_rows)  # (B*A, La, Dt)
    option_mask = torch.from_numpy(text.option.mask[option_rows] > 0)  # (B*A, La)
    question_rows = questions.question_rows[index]
    return CRABatch(
        video=video,
        video_mask=torch.ones(video.shape[:2], dtype=torch.bool),
        question_tokens=_gather(text.question.tokens, question_rows),  # (B, Lq, Dt)
        question_mask=torch.from_numpy(text.question.mask[question_rows] > 0),
        question_pooled=_gather(text.question.pooled, question_rows),  # (B, Dt)
        option_tokens=option_tokens.reshape(B, A, *option_tokens.shape[1:]),  # (B, A, La, Dt)
        option_mask=option_mask.reshape(B, A, -1),  # (B, A, La)
        qa_pooled=_gather(text.qa.pooled, questions.qa_rows[index].reshape(-1)).reshape(B, A, -1),  # (B, A, Dt)
        answer=torch.from_numpy(questions.answers[index]),
        question_choices=None
        if training is None
        else _gather(text.question.pooled, training.question_choices.reshape(-1)).reshape(
            B, training.question_choices.shape[1], -1
        ),  # (B, C, Dt)
        frame_labels=torch.from_numpy(questions.frame_labels[index]) if frame_labels or training else None,
        supervise_grounding=None
        if training is None or training.supervise_grounding is None
        else torch.from_numpy(training.supervise_grounding),
    )


def batch_indices(
    n: int, batch_size: int, shuffle: bool, generator: np.random.Generator | None = None
) -> Iterator[np.ndarray]:
    """Index arrays covering range(n). Shuffled training drops a last batch of 1 (InfoNCE needs negatives)."""
    order = generator.permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        if shuffle and len(index) < 2:
            continue
        yield index
