"""Benchmark of `visual_features` as 1 vs N processes (torchrun; gloo on the CPU): frames/s and their ratio.

    python -m benchmarks.sharded_extraction [--ranks 1 2 --videos 48 --num-frames 16 --model ViT-S-32]

Generates small videos in a temporary folder (as `benchmarks.visual_features`), then runs the whole
stage, `python -m pipeline visual-features`, once per process count (more than 1: the stage re-executes
itself under torchrun, as `dvc repro` runs it), and prints for each:
  - the wall time of the whole command (interpreter start, model load in every process, extraction,
    merge) and frames/s over it;
  - the stage's own frames/s (its final log line: extraction and merge, after the model load);
  - the ratio of each to 1 process; and whether every run wrote the same file, byte for byte.
N processes on one machine share its cores (each gets cores / N torch threads and its own decode
worker), so on the CPU the gain is only what one process leaves idle: on 2 cores expect ~1x. The
speed-up that matters is one process per GPU, or more machines (README "Multi-GPU and multi-node").
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.visual_features import make_videos, write_manifest

STAGE_LINE = re.compile(r"wrote .*: (\d+) videos, (\d+) frames in ([\d.]+) s \(([\d.]+) frames/s\)")


def params_file(args: argparse.Namespace, work: Path, ranks: int) -> Path:
    from pipeline.config import Params, to_dict

    tree = to_dict(Params())
    tree["paths"].update(
        python=sys.executable,
        video_manifest=str(work / "videos.parquet"),
        visual_features=str(work / f"visual-{ranks}.parquet"),
    )
    tree["decode"]["num_frames"] = args.num_frames
    tree["gsg"]["kernel_size"] = 1  # not read by this stage; must only fit in num_frames to load
    tree["features"].update(device=args.device)
    tree["features"]["launch"]["nproc_per_node"] = ranks
    tree["features"]["visual"].update(
        model=args.model, pretrained="none", batch_size=args.batch_size, num_workers=args.num_workers
    )
    path = work / f"params-{ranks}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def run_stage(args: argparse.Namespace, work: Path, ranks: int) -> dict:
    command = [sys.executable, "-m", "pipeline", "visual-features", "--params", str(params_file(args, work, ranks))]
    env = {**os.environ, "CRA_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{ranks} process(es): the stage failed:\n{done.stderr[-4000:]}")
    match = STAGE_LINE.search(done.stderr)
    if match is None:
        raise SystemExit(f"{ranks} process(es): no 'wrote ...' line in the stage's log:\n{done.stderr[-2000:]}")
    frames = int(match.group(2))
    output = Path(work / f"visual-{ranks}.parquet")
    return {
        "ranks": ranks,
        "frames": frames,
        "wall_s": wall,
        "wall_fps": frames / wall,
        "stage_s": float(match.group(3)),
        "stage_fps": float(match.group(4)),
        "bytes": output.read_bytes(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    parser.add_argument("--videos", type=int, default=48, help="manifest rows")
    parser.add_argument("--distinct", type=int, default=24, help="distinct video files the rows point to")
    parser.add_argument("--video-frames", type=int, default=64, help="frames per generated video")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--num-frames", type=int, default=16, help="T sampled frames per video")
    parser.add_argument("--model", default="ViT-S-32", help="open_clip architecture (random init)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=1, help="decode workers per process")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=1, help="runs per process count (the best is kept)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_sharded_") as tmp:
        work = Path(tmp)
        (work / "videos").mkdir()
        videos = make_videos(work / "videos", args.distinct, args.video_frames, args.width, args.height)
        write_manifest(
            work / "videos.parquet", videos, args.videos, args.num_frames, args.video_frames, args.width, args.height
        )
        print(
            f"# visual_features, {args.model} (random init), {args.videos} videos x T={args.num_frames} on "
            f"{args.device}; batch {args.batch_size}; {args.num_workers} decode worker(s) per process; "
            f"{os.cpu_count()} CPUs (load average now {os.getloadavg()[0]:.1f})"
        )
        results = []
        for ranks in args.ranks:
            runs = [run_stage(args, work, ranks) for _ in range(args.repeats)]
            results.append(min(runs, key=lambda r: r["wall_s"]))
        base = results[0]
        for r in results:
            print(
                f"  {r['ranks']} process(es): whole command {r['wall_s']:6.1f} s = {r['wall_fps']:6.1f} frames/s "
                f"(x{r['wall_fps'] / base['wall_fps']:.2f}); stage after model load {r['stage_s']:6.1f} s = "
                f"{r['stage_fps']:6.1f} frames/s (x{r['stage_fps'] / base['stage_fps']:.2f})"
            )
        same = all(r["bytes"] == base["bytes"] for r in results)
        print(f"  every run wrote the same file, byte for byte: {'yes' if same else 'NO'}")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if args.device == "cpu" and cores is not None and cores <= max(args.ranks):
            print(
                f"  ({cores} cores: the processes share them, so expect little gain on the CPU; more processes pay "
                "off with one per GPU or more machines)"
            )


if __name__ == "__main__":
    main()
