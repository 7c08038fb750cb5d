"""Benchmark of the `visual_features` stage: throughput against the encoder alone, and memory vs dataset size.

    python -m benchmarks.visual_features [--videos 100 --videos-large 1000 --model ViT-S-32 ...]

Generates its own small videos in a temporary folder (a few dozen distinct mp4 files; manifest rows
reuse them cyclically, so 1,000 rows cost no more disk than 24), then prints:
  - decode-only frames/s (decord `get_batch`, then decode + the workers' resize/crop),
  - encoder-only frames/s on pre-decoded, preprocessed uint8 tensors (normalise + encode_image),
  - whole-stage frames/s (`extract_visual_features`: decode workers, cross-video batches, Parquet)
    and its ratio to the encoder alone (target >= 0.9: decoding hides behind encoding),
  - peak RSS of the stage run in a fresh subprocess at `--videos` and `--videos-large` rows (with a
    tiny open_clip config by default), and their ratio (target <= 1.2: memory does not grow with N).
Numbers depend on the machine and on whatever else runs on it: on a shared CPU, compare ratios.

Shape notation: N videos, T frames per video, B frames per batch, C = 3, S model input side, D width.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TINY_MODEL = "bench-tiny-vit"
TINY_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
}


def make_videos(folder: Path, count: int, frames: int, width: int, height: int, fps: float = 16.0) -> list[Path]:
    """`count` distinct mp4 (mp4v) videos: a coloured background per video, moving shapes."""
    import cv2

    paths = []
    for k in range(count):
        rng = np.random.default_rng(k)
        background = rng.integers(0, 256, size=3)
        path = folder / f"video{k:03d}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        for i in range(frames):
            frame = np.empty((height, width, 3), np.uint8)
            frame[:] = (background + 3 * i) % 256
            x = (i * 4) % (width - width // 4)
            cv2.rectangle(frame, (x, height // 6), (x + width // 4, height // 2), (255, 255, 255), -1)
            cv2.circle(frame, (width - 1 - x, 2 * height // 3), height // 6, (0, 0, 255), -1)
            writer.write(frame)
        writer.release()
        paths.append(path)
    return paths


def write_manifest(
    path: Path, videos: list[Path], rows: int, num_frames: int, frames: int, width: int, height: int, fps: float = 16.0
) -> Path:
    import pyarrow as pa

    from pipeline.artifacts import schemas
    from pipeline.artifacts.parquet import write_table
    from pipeline.data.video import sample_frame_indices

    indices, timestamps = sample_frame_indices(frames, fps, num_frames)
    table = pa.Table.from_pylist(
        [
            {
                "video_id": f"v{row:05d}",
                "path": str(videos[row % len(videos)]),
                "status": "ok",
                "error": None,
                "frame_count": frames,
                "fps": fps,
                "duration": frames / fps,
                "width": width,
                "height": height,
                "frame_indices": indices.tolist(),
                "timestamps": timestamps.tolist(),
            }
            for row in range(rows)
        ],
        schema=schemas.VIDEO_MANIFEST,
    )
    write_table(table, path, schemas.VIDEO_MANIFEST)
    return path


def register_tiny_model(folder: Path) -> None:
    import open_clip

    (folder / f"{TINY_MODEL}.json").write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(folder)


def params_for(args: argparse.Namespace, manifest: Path, output: Path, model: str):
    from pipeline.config import Params, build

    return build(
        Params,
        {
            "paths": {"video_manifest": str(manifest), "visual_features": str(output)},
            "decode": {"num_frames": args.num_frames},
            "features": {
                "device": args.device,
                "visual": {
                    "model": model,
                    "pretrained": args.pretrained if model == args.model else "none",
                    "batch_size": args.batch_size,
                    "num_workers": args.num_workers,
                    "prefetch_videos": args.prefetch_videos,
                },
            },
        },
    )


# ---------------------------------------------------------------------------------------------
# Measurements


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the decode workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Meter:
    """Wall and CPU seconds of one measured block."""

    def __enter__(self) -> Meter:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, cpu_seconds() - self.cpu


def measure_throughput(args: argparse.Namespace, work: Path, videos: list[Path]) -> dict:
    import torch

    from pipeline.data.decode import decode_frames
    from pipeline.encoders.visual import load_encoder
    from pipeline.runtime import resolve_device
    from stages.visual_features import extract_visual_features, load_video_requests

    manifest = write_manifest(
        work / "videos.parquet", videos, args.videos, args.num_frames, args.video_frames, args.width, args.height
    )
    requests = load_video_requests(manifest, args.num_frames)
    frames = len(requests) * args.num_frames
    with Meter() as load:
        encoder = load_encoder(args.model, args.pretrained, resolve_device(args.device))

    # Decode only, then decode + resize/crop (what a worker does), one video at a time.
    with Meter() as decode:
        for request in requests:
            decode_frames(request)
    distinct = {}
    with Meter() as decode_preprocess:
        for request in requests:
            distinct.setdefault(request.path, encoder.preprocessor(decode_frames(request)))  # (T, C, S, S) uint8

    # Encoder only: pre-decoded, preprocessed uint8 tensors; as many frames as the stage encodes.
    pool = torch.cat(list(distinct.values()))  # (F, C, S, S)
    batches = [pool[torch.arange(i, i + args.batch_size) % len(pool)] for i in range(0, frames, args.batch_size)]
    batches[-1] = batches[-1][: frames - args.batch_size * (len(batches) - 1)]
    encoder.encode(batches[0])  # warm-up (allocations, oneDNN kernels)

    # On a shared CPU the compute available drifts: alternate the two measurements, keep the best
    # wall time of each, and also compare CPU time per frame (main process + decode workers), which
    # other processes disturb much less.
    encoder_runs, stage_runs = [], []
    for _ in range(args.repeats):
        with Meter() as encode:
            for batch in batches:
                encoder.encode(batch)
        encoder_runs.append(encode)
        with Meter() as stage:
            extract_visual_features(
                requests,
                encoder,
                work / "visual.parquet",
                num_frames=args.num_frames,
                dtype="float32",
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                prefetch_videos=args.prefetch_videos,
            )
        stage_runs.append(stage)
    median = lambda values: float(np.median(values))  # noqa: E731
    encoder_cpu = median([run.cpu for run in encoder_runs]) / frames
    stage_cpu = median([run.cpu for run in stage_runs]) / frames
    return {
        "model": args.model,
        "videos": len(requests),
        "num_frames": args.num_frames,
        "frames": frames,
        "model_load_s": load.wall,
        "torch_threads": torch.get_num_threads(),
        "decode_fps": frames / decode.wall,
        "decode_cpu_ms": 1e3 * decode.cpu / frames,
        "decode_preprocess_fps": frames / decode_preprocess.wall,
        "decode_preprocess_cpu_ms": 1e3 * decode_preprocess.cpu / frames,
        "encoder_fps_all": [frames / run.wall for run in encoder_runs],
        "stage_fps_all": [frames / run.wall for run in stage_runs],
        "encoder_cpu_ms": 1e3 * encoder_cpu,
        "stage_cpu_ms": 1e3 * stage_cpu,
        "stage_s_best": min(run.wall for run in stage_runs),
        "ratio_wall": max(frames / run.wall for run in stage_runs) / max(frames / run.wall for run in encoder_runs),
        "ratio_cpu": encoder_cpu / stage_cpu,
    }


def print_throughput(t: dict, target: float = 0.9) -> None:
    """Print what `measure_throughput` measured."""
    runs = lambda values: ", ".join(f"{v:.1f}" for v in values)  # noqa: E731
    print(
        f"model {t['model']}, {t['videos']} videos x {t['num_frames']} frames = {t['frames']} frames, "
        f"{t['torch_threads']} torch threads (model load {t['model_load_s']:.1f} s)"
    )
    print(
        f"  decode only (decord get_batch)     {t['decode_fps']:8.1f} frames/s  {t['decode_cpu_ms']:6.2f} CPU ms/frame"
    )
    print(
        f"  decode + resize/crop (a worker)    {t['decode_preprocess_fps']:8.1f} frames/s  "
        f"{t['decode_preprocess_cpu_ms']:6.2f} CPU ms/frame"
    )
    print(
        f"  encoder only (pre-decoded tensors) {max(t['encoder_fps_all']):8.1f} frames/s  "
        f"{t['encoder_cpu_ms']:6.2f} CPU ms/frame  (runs: {runs(t['encoder_fps_all'])} frames/s)"
    )
    print(
        f"  whole stage                        {max(t['stage_fps_all']):8.1f} frames/s  "
        f"{t['stage_cpu_ms']:6.2f} CPU ms/frame  (runs: {runs(t['stage_fps_all'])} frames/s; "
        f"best {t['stage_s_best']:.1f} s)"
    )
    print(
        f"  ratio whole / encoder: {t['ratio_wall']:.3f} by best wall time, {t['ratio_cpu']:.3f} by CPU "
        f"time per frame  (target >= {target})"
    )


def child_stage_run(args: argparse.Namespace) -> None:
    """(In a subprocess) run the whole stage once; print wall time and peak RSS as JSON."""
    work = Path(args.child_dir)
    model = args.model
    if args.rss_model == "tiny":
        register_tiny_model(work)
        model = TINY_MODEL
    elif args.rss_model != "same":
        model = args.rss_model
    from stages import visual_features

    params = params_for(
        args, work / f"videos{args.child_rows}.parquet", work / f"visual{args.child_rows}.parquet", model
    )
    sampler = PeakMemorySampler()
    sampler.start()
    start = time.perf_counter()
    visual_features.run(params)
    seconds = time.perf_counter() - start
    sampler.stop()
    print(
        json.dumps(
            {
                "rows": args.child_rows,
                "model": model,
                "seconds": seconds,
                "peak_rss_main_mib": main_peak_rss_mib(),
                "peak_rss_total_mib": sampler.peak_total_mib,
            }
        )
    )


def main_peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child started by
    a big parent would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemorySampler:
    """Samples the RSS of this process plus its decode workers every 20 ms; keeps the peak sum.
    (Forked workers share pages with the main process, so the sum over-counts; it is for ratios.)"""

    def __init__(self, interval: float = 0.02):
        import threading

        self.interval = interval
        self.peak_total_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = me.memory_info().rss
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # a worker that just exited
                    pass
            self.peak_total_mib = max(self.peak_total_mib, total / 2**20)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measure_rss(args: argparse.Namespace, work: Path, videos: list[Path]) -> list[dict]:
    results = []
    for rows in (args.videos, args.videos_large):
        write_manifest(
            work / f"videos{rows}.parquet", videos, rows, args.num_frames, args.video_frames, args.width, args.height
        )
        command = [
            sys.executable,
            "-m",
            "benchmarks.visual_features",
            "--child-rows",
            str(rows),
            "--child-dir",
            str(work),
            *sys.argv[1:],
        ]
        env = {**os.environ, "CRA_NO_PROGRESS": "1", "CRA_LOG_LEVEL": "WARNING"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(f"stage run with {rows} videos failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=100, help="manifest rows for the throughput and small RSS run")
    parser.add_argument("--videos-large", type=int, default=1000, help="manifest rows for the large RSS run")
    parser.add_argument("--distinct", type=int, default=24, help="distinct video files the rows point to")
    parser.add_argument("--video-frames", type=int, default=64, help="frames per generated video")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--num-frames", type=int, default=16, help="T sampled frames per video (the pipeline: 32)")
    parser.add_argument("--model", default="ViT-S-32", help="open_clip architecture for the throughput runs")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--rss-model", default="tiny", help="`tiny` (a 2-layer 64 px ViT), `same`, or an architecture")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--prefetch-videos", type=int, default=8)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="alternating encoder/stage measurements (best kept)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--child-rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("CRA_NO_PROGRESS", "1")
    if args.child_rows is not None:
        child_stage_run(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench_visual_") as tmp:
        work = Path(tmp)
        (work / "videos").mkdir()
        videos = make_videos(work / "videos", args.distinct, args.video_frames, args.width, args.height)
        print(
            f"# {args.distinct} distinct {args.width}x{args.height} videos of {args.video_frames} frames; "
            f"T={args.num_frames}; batch {args.batch_size}; {args.num_workers} decode worker(s); "
            f"{os.cpu_count()} CPUs (load average now {os.getloadavg()[0]:.1f})"
        )
        if not args.skip_throughput:
            print_throughput(measure_throughput(args, work, videos))
        if not args.skip_rss:
            small, large = measure_rss(args, work, videos)
            for run in (small, large):
                print(
                    f"stage run, {run['rows']:5d} videos ({run['model']}): {run['seconds']:6.1f} s, peak RSS main "
                    f"{run['peak_rss_main_mib']:7.1f} MiB, main + decode workers {run['peak_rss_total_mib']:7.1f} MiB"
                )
            for key, what in (("peak_rss_main_mib", "main process"), ("peak_rss_total_mib", "main + workers")):
                ratio = large[key] / small[key]
                print(
                    f"  peak RSS ratio {large['rows']} / {small['rows']} videos, {what}: {ratio:.3f}  (target <= 1.2)"
                )


if __name__ == "__main__":
    main()
