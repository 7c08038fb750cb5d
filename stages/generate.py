"""Stage `generate`: render the synthetic confounded VideoQG benchmark into `paths.synthetic`.

Builds every split's scripts and questions (`pipeline.data.synthetic.build_dataset`), renders each video
to mp4, writes the NExT-GQA-format annotation files, and only then swaps the finished folder into
place, so an interrupted run never leaves a half-written benchmark behind.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from pipeline.config import Params, SyntheticConfig
from pipeline.data.synthetic import SPLITS, build_dataset, render_video, write_annotations
from pipeline.data.synthetic.writer import GENERATOR_NAME
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger, progress, temp_path

log = get_logger("generate")


def _is_replaceable(folder: Path) -> bool:
    """An empty folder, or one this generator wrote (its dataset.json says so)."""
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    if not any(folder.iterdir()):
        return True
    try:
        info = json.loads((folder / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("generator") == GENERATOR_NAME


def generate(out_dir: Path, cfg: SyntheticConfig, total_videos: int | None) -> dict:
    """Write the benchmark to `out_dir` (replacing an earlier one); return dataset.json's content."""
    out_dir = Path(out_dir)
    if not _is_replaceable(out_dir):
        raise PipelineError(
            f"generate: {out_dir} exists and is not a synthetic benchmark (no dataset.json from {GENERATOR_NAME}); "
            "choose another --out or remove it"
        )
    started = time.perf_counter()
    dataset = build_dataset(cfg, total_videos)
    videos = dataset.all_videos()
    staging = temp_path(out_dir)  # removes the staging folders of killed runs
    if staging.exists():
        shutil.rmtree(staging)
    try:
        for video in progress(videos, desc="render videos", unit="video"):
            path = staging / "videos" / f"{video.relative_path}.mp4"
            render_video(video.script, path, cfg.width, cfg.height)
        info = write_annotations(dataset, staging, total_videos)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    frames = sum(v.script.frame_count for v in videos)
    log.info(
        "wrote %d videos (%d frames) and %d questions to %s in %.1f s",
        len(videos),
        frames,
        sum(s["questions"] for s in info["splits"].values()),
        out_dir,
        time.perf_counter() - started,
    )
    for split in SPLITS:
        s = info["splits"][split]
        log.info(
            "  %-8s %4d videos %5d questions  agreement visual %.3f language %.3f",
            split,
            s["videos"],
            s["questions"],
            s["agreement"]["visual"],
            s["agreement"]["language"],
        )
    return info


def run(params: Params) -> None:
    generate(Path(params.paths.synthetic), params.synthetic, None)
