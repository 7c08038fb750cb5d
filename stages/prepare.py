"""Stage `prepare`: annotations -> QA table; every referenced video -> probed manifest row.

Reads `data.dataset`'s annotations through its adapter (`pipeline.data.datasets`), writes
`paths.qa_table` (schema QA, one row per question) and `paths.video_manifest` (schema
VIDEO_MANIFEST, one row per distinct video the questions refer to: its path, probe results and,
for usable videos, the T frame indices and timestamps to decode). Bad videos (missing, empty,
corrupt, timeout, refused, mismatched: see `pipeline.artifacts.schemas.VIDEO_STATUSES`) are
recorded with their error and summarised in the log; they are not fatal unless no video at all is
usable. A split without questions is an error. Ground-truth segments past a video's end are clipped
(`pipeline.data.consistency`). Rows are sorted (split in params order, then video_id, then qid; the
manifest by video_id) so a re-run writes identical bytes.

Shape notation: T = decode.num_frames sampled frames per video.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa

from pipeline.artifacts.parquet import write_table
from pipeline.artifacts.schemas import QA, VIDEO_MANIFEST, VIDEO_STATUSES
from pipeline.config import DataConfig, Params
from pipeline.data.consistency import check_frame_times, clip_segments
from pipeline.data.datasets import LoadedDataset, load_dataset, qa_table
from pipeline.data.datasets.base import split_param
from pipeline.data.video import AmbiguousVideoError, Prober, VideoProbe, find_video_file, sample_frame_indices
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


def probe_videos(dataset: LoadedDataset, timeout_s: float) -> tuple[dict[str, VideoProbe], dict[str, Path]]:
    """`(video_id -> VideoProbe, video_id -> path)`, in video_id order; never raises for a bad file.

    A refused path is not opened (status `refused`). The path is the annotated `.mp4` or the one
    other container that exists (`find_video_file`); several candidates are an error. Each probe
    runs in a child process, abandoned after `timeout_s` seconds (status `timeout`).
    """
    video_ids = sorted(dataset.video_paths)
    probes, paths = {}, {}
    with Prober(timeout_s) as prober:
        for video_id in progress(video_ids, "probe videos", len(video_ids), "video"):
            if video_id in dataset.refused:
                paths[video_id] = dataset.video_paths[video_id]
                probes[video_id] = VideoProbe(status="refused", error=dataset.refused[video_id])
                continue
            try:
                paths[video_id] = find_video_file(dataset.video_paths[video_id])
            except AmbiguousVideoError as err:
                raise AmbiguousVideoError(f"prepare: video {video_id!r}: {err}") from None
            probes[video_id] = prober(paths[video_id])
    return probes, paths


def check_splits(dataset: LoadedDataset, data: DataConfig) -> Counter:
    """Questions per split; a split without any is an error naming it (not a failure later in `train`)."""
    per_split = Counter(q.split for q in dataset.questions)
    for split in dataset.splits:
        if not per_split[split]:
            key = split_param(data, split)
            raise PipelineError(
                f"prepare ({dataset.name}): split {split!r} (from `{key}`) has no questions: its annotation file "
                f"in {data.annotation_dir} holds no rows. Add its questions, or take {split!r} out of `{key}`"
            )
    return per_split


def manifest_table(
    dataset: LoadedDataset,
    probes: dict[str, VideoProbe],
    num_frames: int,
    use_frame2time: bool,
    paths: dict[str, Path] | None = None,
    past_end: dict[str, int] | None = None,
) -> tuple[pa.Table, Counter]:
    """The manifest (schema VIDEO_MANIFEST) and a count of how each usable video was sampled.

    A usable video with official frame times (NExT-GQA `frame2time`) of exactly T entries is sampled
    at them; one whose official list has another length falls back to uniform sampling (counted as
    `uniform_fallback`, warned about by the caller), as does every video without official times.
    `paths` (default: the dataset's) are the files probed; `past_end` the official times past each end.
    """
    paths = paths or dataset.video_paths
    past_end = past_end or {}
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
            indices, times = sample_frame_indices(
                probe.frame_count, probe.fps, num_frames, official, pts=probe.pts, duration=probe.duration
            )  # (T,), (T,)
            indices, timestamps = indices.tolist(), times.tolist()
        rows["video_id"].append(video_id)
        rows["path"].append(paths[video_id].as_posix())
        rows["status"].append(probe.status)
        rows["error"].append(probe.error)
        rows["frame_count"].append(probe.frame_count)
        rows["fps"].append(probe.fps)
        rows["duration"].append(probe.duration)
        rows["width"].append(probe.width)
        rows["height"].append(probe.height)
        rows["frame_indices"].append(indices)
        rows["timestamps"].append(timestamps)
        rows["vfr"].append(probe.vfr)
        rows["times_past_end"].append(past_end.get(video_id))
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


def _warn_per_video(lines: list[str], what: str, where: str) -> None:
    """One warning per video for the first 10, then a count."""
    for line in lines[:10]:
        log.warning(line)
    if len(lines) > 10:
        log.warning("... and %d more %s (see %s)", len(lines) - 10, what, where)


def run(params: Params) -> None:
    data, decode, num_frames = params.data, params.decode, params.decode.num_frames
    manifest_path = params.paths.video_manifest
    with timed(log, "reading annotations"):
        dataset = load_dataset(data)
    for warning in dataset.warnings:
        log.warning(warning)
    per_split = check_splits(dataset, data)
    log.info(
        "%s: %d questions (%s) on %d videos",
        dataset.name,
        len(dataset.questions),
        ", ".join(f"{s}: {per_split[s]}" for s in dataset.splits),
        len(dataset.video_paths),
    )

    with timed(log, f"probing {len(dataset.video_paths)} videos"):
        probes, paths = probe_videos(dataset, decode.timeout_s)
    frame_times = dataset.frame_times if decode.use_frame2time else {}
    probes, past_end = check_frame_times(probes, frame_times, num_frames, decode.max_times_past_end)
    statuses = Counter(p.status for p in probes.values())
    log.info("videos: %s", ", ".join(f"{s} {statuses[s]}" for s in VIDEO_STATUSES))
    if not statuses["ok"]:
        raise _no_usable_video_error(dataset, probes, data.video_root)
    bad = [v for v in sorted(probes) if not probes[v].ok]
    _warn_per_video(
        [f"video {v} is {probes[v].status}: {probes[v].error}" for v in bad],
        "unusable videos",
        f"the `status` and `error` columns of {manifest_path}",
    )
    if bad:
        log.warning(
            "%d of %d videos are unusable (in the manifest with their status, no frames)", len(bad), len(probes)
        )
    ok = [v for v in sorted(probes) if probes[v].ok]
    _warn_per_video(
        [
            f"video {v}: {past_end[v]} of {num_frames} official frame times lie past its end "
            f"({probes[v].duration:.2f} s): they show its last frame"
            for v in ok
            if past_end.get(v)
        ],
        "videos with official times past their end",
        f"the `times_past_end` column of {manifest_path}",
    )
    _warn_per_video([f"video {v}: {probes[v].note}" for v in ok if probes[v].note], "notes", manifest_path)
    vfr = sum(bool(probes[v].vfr) for v in ok)
    if vfr:
        log.info("%d usable videos have a variable frame rate: sampled at their presentation timestamps", vfr)

    questions, clipped = clip_segments(dataset.questions, probes)
    _warn_per_video(
        [
            f"video {v}: {n} ground-truth segment(s) end after the video ({probes[v].duration:.2f} s): "
            "clipped to its end"
            for v, n in sorted(clipped.items())
        ],
        "videos with clipped segments",
        f"`segments_clipped` in the metadata of {params.paths.qa_table}",
    )

    manifest, sampling = manifest_table(dataset, probes, num_frames, decode.use_frame2time, paths, past_end)
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
        qa_table(questions),
        params.paths.qa_table,
        schema=QA,
        metadata={
            "artifact": "qa",
            **metadata,
            "questions": {s: per_split[s] for s in dataset.splits},
            "segments_clipped": sum(clipped.values()),
        },
    )
    write_table(
        manifest,
        manifest_path,
        schema=VIDEO_MANIFEST,
        metadata={
            "artifact": "video_manifest",
            **metadata,
            "use_frame2time": decode.use_frame2time,
            "statuses": {s: statuses[s] for s in VIDEO_STATUSES},
            "sampling": dict(sorted(sampling.items())),
            "vfr": vfr,
            "times_past_end": {
                "videos": sum(1 for v in ok if past_end.get(v)),
                "times": sum(past_end.get(v, 0) for v in ok),
            },
        },
    )
    log.info("wrote %s and %s", params.paths.qa_table, manifest_path)
