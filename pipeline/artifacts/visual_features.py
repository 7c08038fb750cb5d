"""The visual-feature artifact (`paths.visual_features`): its metadata, and its reader.

One row per decoded video, in manifest order: `video_id`, the T sampled `frame_indices` and
`timestamps`, and `features` (T, D), the raw outputs of open_clip's `encode_image` (NOT
L2-normalised; metadata `normalized: false`), stored as `features.visual.dtype`.

Readers call `read_visual_features(path, expected_visual_metadata(params))`, which refuses
features made with another model, other weights or another T. The weights are compared by what
they are, not by name: the metadata's `pretrained` is the open_clip tag, `none` (random init), or
`sha256:<hex>` of a checkpoint file. This module imports neither torch nor open_clip, so consumers
(confounders, train, a linear probe) read features without loading the encoder.

Shape notation: N videos, T frames per video, D feature width.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import ArtifactError, fixed_list_to_numpy, read_metadata, read_table, require_metadata

ARTIFACT = "visual_features"
PARAM_HINT = "`features.visual.*` / `decode.num_frames` in params.yaml"
RANDOM_INIT = "none"
# `features.visual.model: oracle`: the synthetic benchmark's scene states instead of an encoder's features.
ORACLE = "oracle"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")


def is_random_init(pretrained: str) -> bool:
    return pretrained.strip().lower() == RANDOM_INIT


def looks_like_path(pretrained: str) -> bool:
    """A value meant as a checkpoint file rather than an open_clip tag (tags have no '/' or suffix)."""
    return "/" in pretrained or "\\" in pretrained or pretrained.lower().endswith(_CHECKPOINT_SUFFIXES)


@lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint file (hashed once per process while the file is unchanged)."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    return _sha256_of(str(resolved), stat.st_size, stat.st_mtime_ns)


def weights_record(pretrained: str) -> str:
    """What the metadata's `pretrained` says for a `features.visual.pretrained` value that resolves
    here: `none`, `sha256:<hex>` of an existing checkpoint file, or the open_clip tag."""
    if is_random_init(pretrained):
        return RANDOM_INIT
    if Path(pretrained).expanduser().is_file():
        return f"sha256:{checkpoint_sha256(pretrained)}"
    return pretrained


def expected_visual_metadata(params: Any) -> dict[str, Any]:
    """Metadata a visual-feature file must carry to be used with `params` (a `Params`).

    A checkpoint path that does not exist on this machine (features pulled from a DVC remote) is
    compared by its path (`pretrained_param`) instead of its hash.
    """
    visual = params.features.visual
    expected: dict[str, Any] = {"artifact": ARTIFACT, "model": visual.model, "num_frames": params.decode.num_frames}
    if visual.model == ORACLE:
        return expected  # no weights: `features.visual.pretrained` is ignored
    pretrained = visual.pretrained
    if not is_random_init(pretrained) and looks_like_path(pretrained) and not Path(pretrained).expanduser().is_file():
        expected["pretrained_param"] = pretrained
    else:
        expected["pretrained"] = weights_record(pretrained)
    return expected


class VisualFeatures(NamedTuple):
    """The artifact in memory; unpacks as `video_ids, features, timestamps, metadata`.

    `features` keeps the storage dtype (float32 or float16) and is a read-only, zero-copy view of
    the Arrow data when the file has one row group (else one concatenated copy): cast or copy it
    before changing it in place.
    """

    video_ids: list[str]  # (N,)
    features: np.ndarray  # (N, T, D)
    timestamps: np.ndarray  # (N, T) float64 seconds
    metadata: dict[str, Any]

    def rows(self, video_ids: Sequence[str]) -> np.ndarray:
        """(len(video_ids),) int64 rows of `video_ids`; refuses ids the artifact lacks (skipped or absent)."""
        index = {video_id: row for row, video_id in enumerate(self.video_ids)}
        missing = [v for v in video_ids if v not in index]
        if missing:
            skipped = {s["video_id"] for s in self.metadata.get("skipped_videos", [])}
            why = "; it failed to decode (see metadata `skipped_videos`)" if missing[0] in skipped else ""
            raise ArtifactError(
                f"{len(missing)} video(s) have no visual features, e.g. {missing[0]!r}{why}. Re-run prepare and "
                "visual_features (`dvc repro`) if the manifest changed."
            )
        return np.fromiter((index[v] for v in video_ids), dtype=np.int64, count=len(video_ids))

    def select(self, video_ids: Sequence[str]) -> np.ndarray:
        """(len(video_ids), T, D) features of `video_ids`, in that order (a copy)."""
        return self.features[self.rows(video_ids)]


def read_visual_features(path: str | Path, expected: dict[str, Any] | None) -> VisualFeatures:
    """Read `paths.visual_features`. With `expected` (see `expected_visual_metadata`), refuse a file
    made with another model, other weights or another number of frames."""
    path = Path(path)
    meta = require_metadata(path, expected, PARAM_HINT) if expected is not None else read_metadata(path)
    if meta.get("artifact") != ARTIFACT:
        raise ArtifactError(f"{path} is not a visual-feature file (artifact: {meta.get('artifact')!r})")
    num_frames, dim = int(meta["num_frames"]), int(meta["dim"])
    schema = schemas.visual_features(num_frames, dim, pa.from_numpy_dtype(np.dtype(meta["dtype"])))
    table = read_table(path, schema)
    video_ids = table.column("video_id").to_pylist()
    if len(set(video_ids)) != len(video_ids):
        raise ArtifactError(f"{path} repeats video ids; re-run the visual_features stage")
    return VisualFeatures(
        video_ids=video_ids,
        features=fixed_list_to_numpy(table.column("features"), (num_frames, dim)),
        timestamps=fixed_list_to_numpy(table.column("timestamps"), (num_frames,)),
        metadata=meta,
    )
