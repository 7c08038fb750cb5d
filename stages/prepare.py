"""Stage `prepare`: annotations -> QA table; every referenced video -> probed manifest row.

Reads `data.dataset`'s annotations through its adapter (`pipeline.data.datasets`), writes
`paths.qa_table` (schema QA, one row per question) and `paths.video_manifest` (schema
VIDEO_MANIFEST, one row per distinct video the questions refer to: its path, probe results and,
for usable videos, the T frame indices and timestamps to decode). Bad videos (missing, empty,
corrupt) are recorded with their error and summarised in the log; they are not fatal unless no
video at all is usable. Rows are sorted (split in params order, then video_id, then qid; the
manifest by video_id) so a re-run writes identical bytes.

Shape notation: T = decode.num_frames sampled frames per video.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa

from pipeline.artifacts.parquet import write_table
from pipeline.artifacts.schemas import QA, VIDEO_MANIFEST, VIDEO_STATUSES
from pipeline.config import Params
from pipeline.data.datasets import LoadedDataset, load_dataset, qa_table
from pipeline.data.video import VideoProbe, probe_video, sample_frame_indices
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger, progress, timed

log = get_logger("prepare")

# Where a user gets the videos the annotations refer to (they are never shipped with them).
VIDEO_SOURCES = {
    "nextgqa": "The annotations do not include videos: download NExT-QA's videos (NExTVideo, laid out as "
    "`folder/video_id.mp4` per map_vid_vidorID.json) and point data.video_root at that folder",
    "star": "The annotations do not include videos: download the Charades videos (`<video_id>.mp4`) and "
    "point data.video_root at their folder",
    "synthetic": "Run `dvc repro generate` (or `python -m pipeline generate`) to render them",
}


def probe_videos(video_paths: dict[str, Path]) -> dict[str, VideoProbe]:
    """video_id -> VideoProbe, in video_id order; never raises for a bad file."""
    video_ids = sorted(video_paths)
    return {v: probe_video(video_paths[v]) for v in progress(video_ids, "probe videos", len(video_ids), "video")}


def manifest_table(
    dataset: LoadedDataset, probes: dict[str, VideoProbe], num_frames: int, use_frame2time: bool
) -> tuple[pa.Table, Counter]:
    """The manifest (schema VIDEO_MANIFEST) and a count of how each usable video was sampled.

    A usable video with official frame times (NExT-GQA `frame2time`) of exactly T entries is sampled
    at them; one whose official list has another length falls back to uniform sampling (counted as
    `uniform_fallback`, warned about by the caller), as does every video without official times.
    """
    rows: dict[str, list] = {name: [] for name in VIDEO_MANIFEST.names}
    sampling: Counter = Counter()
    for video_id in sorted(probes):
        probe = probes[video_id]
        indices = timestamps = None
        if probe.ok:
            official = dataset.frame_times.get(video_id) if use_frame2time else None
            if official is not None and len(official) != num_frames:
                sampling["uniform_fallback"] += 1
                official = None
            elif official is not None:
                sampling["frame2time"] += 1
            else:
                sampling["uniform"] += 1
            indices, times = sample_frame_indices(probe.frame_count, probe.fps, num_frames, official)  # (T,), (T,)
            indices, timestamps = indices.tolist(), times.tolist()
        rows["video_id"].append(video_id)
        rows["path"].append(dataset.video_paths[video_id].as_posix())
        rows["status"].append(probe.status)
        rows["error"].append(probe.error)
        rows["frame_count"].append(probe.frame_count)
        rows["fps"].append(probe.fps)
        rows["duration"].append(probe.duration)
        rows["width"].append(probe.width)
        rows["height"].append(probe.height)
        rows["frame_indices"].append(indices)
        rows["timestamps"].append(timestamps)
    return pa.Table.from_pydict(rows, schema=VIDEO_MANIFEST), sampling


def _no_usable_video_error(dataset: LoadedDataset, probes: dict[str, VideoProbe], video_root: str) -> PipelineError:
    statuses = Counter(p.status for p in probes.values())
    examples = [f"{v}: {probes[v].error}" for v in sorted(probes)[:3]]
    if statuses["missing"] == len(probes):
        hint = (
            f"none of the {len(probes)} videos exists under data.video_root={video_root!r}. "
            f"{VIDEO_SOURCES.get(dataset.name, 'Put the videos there')}"
        )
    else:
        counts = ", ".join(f"{s}: {statuses[s]}" for s in VIDEO_STATUSES if statuses[s])
        hint = (
            f"none of the {len(probes)} videos can be used ({counts}); "
            f"check the files under data.video_root={video_root!r}"
        )
    return PipelineError(f"prepare ({dataset.name}): nothing to extract: {hint}. First errors: " + "; ".join(examples))


def run(params: Params) -> None:
    data, num_frames = params.data, params.decode.num_frames
    with timed(log, "reading annotations"):
        dataset = load_dataset(data)
    for warning in dataset.warnings:
        log.warning(warning)
    per_split = Counter(q.split for q in dataset.questions)
    log.info(
        "%s: %d questions (%s) on %d videos",
        dataset.name,
        len(dataset.questions),
        ", ".join(f"{s}: {per_split[s]}" for s in dataset.splits),
        len(dataset.video_paths),
    )

    with timed(log, f"probing {len(dataset.video_paths)} videos"):
        probes = probe_videos(dataset.video_paths)
    statuses = Counter(p.status for p in probes.values())
    log.info("videos: %s", ", ".join(f"{s} {statuses[s]}" for s in VIDEO_STATUSES))
    if not statuses["ok"]:
        raise _no_usable_video_error(dataset, probes, data.video_root)
    bad = [v for v in sorted(probes) if not probes[v].ok]
    for video_id in bad[:10]:
        log.warning("video %s is %s: %s", video_id, probes[video_id].status, probes[video_id].error)
    if len(bad) > 10:
        log.warning(
            "... and %d more unusable videos (see the `status` and `error` columns of %s)",
            len(bad) - 10,
            params.paths.video_manifest,
        )
    if bad:
        log.warning(
            "%d of %d videos are unusable (in the manifest with their status, no frames)", len(bad), len(probes)
        )

    manifest, sampling = manifest_table(dataset, probes, num_frames, params.decode.use_frame2time)
    if sampling["uniform_fallback"]:
        log.warning(
            "%d videos have official frame2time lists whose length differs from decode.num_frames=%d: "
            "sampled uniformly instead (set decode.num_frames to the official count to match published results)",
            sampling["uniform_fallback"],
            num_frames,
        )
    log.info("frame sampling: %s", ", ".join(f"{k} {n}" for k, n in sorted(sampling.items())))

    metadata = {"dataset": dataset.name, "num_frames": num_frames, "splits": list(dataset.splits)}
    write_table(
        qa_table(dataset.questions),
        params.paths.qa_table,
        schema=QA,
        metadata={"artifact": "qa", **metadata, "questions": {s: per_split[s] for s in dataset.splits}},
    )
    write_table(
        manifest,
        params.paths.video_manifest,
        schema=VIDEO_MANIFEST,
        metadata={
            "artifact": "video_manifest",
            **metadata,
            "use_frame2time": params.decode.use_frame2time,
            "statuses": {s: statuses[s] for s in VIDEO_STATUSES},
            "sampling": dict(sorted(sampling.items())),
        },
    )
    log.info("wrote %s and %s", params.paths.qa_table, params.paths.video_manifest)
