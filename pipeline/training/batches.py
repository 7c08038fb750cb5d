"""Model inputs from the pipeline's artifacts: QA table + visual, text and confounder features.

Shape notation: N questions of a split, A options, T frames, Dv frame width, Lq / La question /
option tokens, Dt text width, Kv / Kl dictionary sizes, G = 8 graph nodes.

Features stay in their zero-copy numpy arrays; a split is a set of row indices into them, and a
batch gathers rows (`make_batch`), so memory is the artifacts' size, not the number of questions x A.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
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

log = get_logger("qa_data")


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
    skipped_without_video: int  # questions dropped because their video has no features

    def __len__(self) -> int:
        return len(self.qids)

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


def load_split(qa: pa.Table, split: str, bank: FeatureBank) -> SplitQuestions:
    """Select a split's questions and map each to its feature rows; questions without video features are dropped."""
    rows = qa.filter(pa.compute.equal(qa.column("split"), split)).to_pydict()
    if not rows["qid"]:
        present = sorted(set(qa.column("split").to_pylist()))
        raise PipelineError(
            f"split {split!r} has no questions in the QA table (splits there: {present}); check data.*_split"
        )
    have_video = set(bank.visual.video_ids)
    keep = [i for i, video_id in enumerate(rows["video_id"]) if video_id in have_video]
    skipped = len(rows["qid"]) - len(keep)
    if skipped:
        log.warning(
            "%s: %d of %d questions skipped: their video has no features (see the manifest)",
            split,
            skipped,
            len(rows["qid"]),
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
    return SplitQuestions(
        split=split,
        qids=pick("qid"),
        video_ids=pick("video_id"),
        types=pick("type"),
        answers=np.asarray(pick("answer"), dtype=np.int64),
        segments=pick("segments"),
        durations=durations,
        video_rows=bank.visual.rows(pick("video_id")),
        question_rows=text.question.rows(questions),
        option_rows=np.stack([text.option.rows(o) for o in options]),
        qa_rows=np.stack([text.qa_rows(q, o) for q, o in zip(questions, options, strict=True)]),
        skipped_without_video=skipped,
    )


def _gather(array: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array[rows], dtype=np.float32))


def make_batch(bank: FeatureBank, questions: SplitQuestions, index: np.ndarray) -> CRABatch:
    """Gather the batch `index` (B,) of a split into model inputs."""
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
