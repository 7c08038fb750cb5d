"""Arrow schemas of every Parquet artifact, defined once. Readers and writers use these.

Shape notation: N rows, T frames per video, D feature width, L tokens, K clusters, G graph nodes (8).
Embeddings are `FixedSizeList<float>` columns (nested for 2-D per-row arrays), so a whole column
reads into a numpy `(N, T, D)` array without copying (see `pipeline.artifacts.parquet.fixed_list_to_numpy`).
"""

from __future__ import annotations

import pyarrow as pa

from models.graph_nodes import GRAPH_NODES

SCHEMA_VERSION = 1

# Key of the JSON blob every artifact carries in its Parquet key-value metadata.
METADATA_KEY = b"cra"

# ok: usable. missing / empty / corrupt: the file. timeout: probing took over decode.timeout_s. refused: the
# annotation's path is absolute or leads outside data.video_root (never opened). mismatched: the file is
# shorter than its official frame times say (decode.max_times_past_end). Only `ok` videos are used.
VIDEO_STATUSES = ("ok", "missing", "empty", "corrupt", "timeout", "refused", "mismatched")


SEGMENT = pa.list_(pa.float64(), 2)  # [start_s, end_s]

QA = pa.schema(
    [
        pa.field("split", pa.string(), nullable=False),
        pa.field("qid", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("options", pa.list_(pa.string()), nullable=False),
        pa.field("answer", pa.int32(), nullable=False),  # index into options
        pa.field("type", pa.string(), nullable=False),  # CW/CH/TN/TC/TP (NExT), Interaction/... (STAR)
        pa.field("segments", pa.list_(SEGMENT), nullable=False),  # ground truth, seconds; may be empty
        pa.field("duration", pa.float64(), nullable=True),  # seconds, from the annotation when given
    ]
)

VIDEO_MANIFEST = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # one of VIDEO_STATUSES
        pa.field("error", pa.string(), nullable=True),
        pa.field("frame_count", pa.int64(), nullable=True),
        pa.field("fps", pa.float64(), nullable=True),
        pa.field("duration", pa.float64(), nullable=True),
        pa.field("width", pa.int32(), nullable=True),
        pa.field("height", pa.int32(), nullable=True),
        pa.field("frame_indices", pa.list_(pa.int64()), nullable=True),  # T sampled frames, sorted
        pa.field("timestamps", pa.list_(pa.float64()), nullable=True),  # T seconds (pts, or official times)
        pa.field("vfr", pa.bool_(), nullable=True),  # variable frame rate (frame durations vary)
        pa.field("times_past_end", pa.int32(), nullable=True),  # official frame times after the end (clamped)
    ]
)


# Default element types of embedding columns (pyarrow types are immutable, so shared defaults are safe).
FLOAT32 = pa.float32()
FLOAT16 = pa.float16()


def embedding(dim: int, dtype: pa.DataType = FLOAT32) -> pa.DataType:
    """One D-vector per row."""
    return pa.list_(dtype, dim)


def embedding_grid(rows: int, dim: int, dtype: pa.DataType = FLOAT32) -> pa.DataType:
    """A (rows, D) array per row, e.g. (T, D) frame features or (L, D) token features."""
    return pa.list_(pa.list_(dtype, dim), rows)


def visual_features(num_frames: int, dim: int, dtype: pa.DataType = FLOAT32) -> pa.Schema:
    return pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("frame_indices", pa.list_(pa.int64(), num_frames), nullable=False),
            pa.field("timestamps", pa.list_(pa.float64(), num_frames), nullable=False),
            pa.field("features", embedding_grid(num_frames, dim, dtype), nullable=False),  # (T, D)
        ]
    )


def text_features(max_len: int | None, dim: int, dtype: pa.DataType = FLOAT16) -> pa.Schema:
    """Unique texts of one kind (question / option / qa). `max_len=None`: pooled vector only."""
    fields = [
        pa.field("text_id", pa.string(), nullable=False),  # stable hash of the text
        pa.field("text", pa.string(), nullable=False),
        pa.field("num_tokens", pa.int32(), nullable=False),  # before truncation
        pa.field("pooled", embedding(dim, dtype), nullable=False),  # (D,)
    ]
    if max_len is not None:
        fields += [
            pa.field("tokens", embedding_grid(max_len, dim, dtype), nullable=False),  # (L, D)
            pa.field("mask", pa.list_(pa.int8(), max_len), nullable=False),  # (L,) 1 = real token
        ]
    return pa.schema(fields)


TRIPLE = pa.struct([("subject", pa.string()), ("verb", pa.string()), ("object", pa.string())])

SVO_GRAPHS = pa.schema(
    [
        pa.field("split", pa.string(), nullable=False),
        pa.field("qid", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        *[pa.field(f"node_{name}", pa.string(), nullable=False) for name in GRAPH_NODES],
        pa.field("triples", pa.list_(TRIPLE), nullable=False),
    ]
)


def visual_dictionary(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("cluster_id", pa.int32(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("prior", pa.float32(), nullable=False),  # size / total: P(z)
            pa.field("centroid", embedding(dim), nullable=False),  # (D,)
        ]
    )


def language_dictionary(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("cluster_id", pa.int32(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("prior", pa.float32(), nullable=False),
            pa.field("prototype", embedding_grid(len(GRAPH_NODES), dim), nullable=False),  # (G, D)
        ]
    )


# One row per evaluated question, written by `evaluate` as `<paths.predictions>/predictions.parquet`.
PREDICTIONS_FILE = "predictions.parquet"
PREDICTIONS = pa.schema(
    [
        pa.field("split", pa.string(), nullable=False),
        pa.field("qid", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("answer", pa.int32(), nullable=False),
        pa.field("prediction", pa.int32(), nullable=False),
        pa.field("option_scores", pa.list_(pa.float32()), nullable=False),
        pa.field("frame_weights", pa.list_(pa.float32()), nullable=False),  # (T,) pooled and grounded on
        pa.field("frame_attention", pa.list_(pa.float32()), nullable=False),  # (T,) before GSG's smoothing
        pa.field("timestamps", pa.list_(pa.float64()), nullable=False),  # (T,)
        pa.field("span_prehoc", SEGMENT, nullable=False),
        pa.field("span_posthoc", SEGMENT, nullable=False),
        pa.field("span_merged", SEGMENT, nullable=False),
    ]
)


def official_key(video_id: str, qid: str) -> str:
    """NExT-GQA's key for a question in its JSON result files."""
    return f"{video_id}_{qid}"
