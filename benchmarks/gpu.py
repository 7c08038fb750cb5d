"""GPU benchmark: ViT-L-14 frames/s (encoder only vs the whole visual_features stage) and CRA training
steps/s at the paper's width (768).

    python -m benchmarks.gpu [--videos 160 --num-workers 8 --train-steps 40 ...]
    python -m benchmarks.gpu --smoke     # every code path on the CPU, tiny sizes (the tests run it)

Sized to finish in under 5 minutes on one recent GPU (model builds included). Without a CUDA device it
says so and exits with status 0, measuring nothing.

  - Visual (`benchmarks.visual_features.measure_throughput`): open_clip ViT-L-14 with random weights,
    generated `--width` x `--height` mp4 videos, T = `--num-frames`: decode-only and decode + resize/crop
    frames/s (one process), encoder-only frames/s on pre-decoded uint8 batches (normalise, autocast
    encode_image, copy back), and the whole stage (decode workers, cross-video batches, Parquet) with
    its ratio to the encoder alone (target >= 0.8).
  - Training: `models.cra.CRA` built from `--params` (default params.yaml) with `model.d_model` = 768,
    ViT-L-14 / RoBERTa feature widths (768), random confounder dictionaries of the params' sizes, and
    random batches of `train.batch_size` questions (T = decode.num_frames, 5 options, the params' token
    budgets). One step = forward + losses + backward + gradient clipping + optimizer step, as
    `stages/train.py` does; timed in float32 and under bf16 (or fp16) autocast. The data loading of
    the real training loop is not included.

Shape notation: B questions, T frames, A options, Lq / La tokens, Dv / Dt feature widths, K clusters, G graph nodes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

PAPER_WIDTH = 768
FEATURE_WIDTH = 768  # ViT-L-14 image features and RoBERTa-base tokens
NUM_OPTIONS = 5


def visual_benchmark(args: argparse.Namespace) -> None:
    from benchmarks.visual_features import make_videos, measure_throughput, print_throughput

    bench = argparse.Namespace(
        videos=args.videos,
        num_frames=args.num_frames,
        video_frames=args.video_frames,
        width=args.width,
        height=args.height,
        model=args.model,
        pretrained="none",
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        prefetch_videos=args.prefetch_videos,
        repeats=args.repeats,
    )
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        work = Path(tmp)
        (work / "videos").mkdir()
        videos = make_videos(work / "videos", args.distinct, args.video_frames, args.width, args.height)
        print(
            f"# visual: {args.model} (random init), {args.videos} videos of {args.width}x{args.height} "
            f"(T={args.num_frames}), batch {args.batch_size}, {args.num_workers} decode workers, {args.device}"
        )
        print_throughput(measure_throughput(bench, work, videos), target=0.8)


VQ_NEGATIVES = 4  # train.vq_negatives of the default params


def random_batch(B: int, T: int, Lq: int, La: int, Dv: int, Dt: int, device):
    """A CRABatch of random features; a few padded frames and tokens, distinct questions."""
    import torch

    from models.cra import CRABatch

    lengths = torch.randint(T // 2, T + 1, (B,))
    return CRABatch(
        video=torch.randn(B, T, Dv),
        video_mask=torch.arange(T)[None, :] < lengths[:, None],  # (B, T)
        question_tokens=torch.randn(B, Lq, Dt),
        question_mask=torch.arange(Lq)[None, :] < torch.randint(4, Lq + 1, (B, 1)),  # (B, Lq)
        question_pooled=torch.randn(B, Dt),
        option_tokens=torch.randn(B, NUM_OPTIONS, La, Dt),
        option_mask=torch.arange(La)[None, None, :] < torch.randint(2, La + 1, (B, NUM_OPTIONS, 1)),
        qa_pooled=torch.randn(B, NUM_OPTIONS, Dt),
        answer=torch.randint(0, NUM_OPTIONS, (B,)),
        question_choices=torch.randn(B, 1 + VQ_NEGATIVES, Dt),  # the VQ pass's choices, as in training
    ).to(device)


def train_steps_per_second(params, device, *, width: int, steps: int, warmup: int, amp) -> tuple[float, float]:
    """(steps/s, peak GPU memory in GiB or nan) of forward + losses + backward + clip + optimizer step."""
    import torch

    from models.cra import CRA
    from models.eci import LanguageDictionary, VisualDictionary
    from models.graph_nodes import GRAPH_NODES
    from models.losses import compute_losses

    torch.manual_seed(0)
    sections = dataclasses.replace(params, model=dataclasses.replace(params.model, d_model=width))
    Dv = Dt = FEATURE_WIDTH if width == PAPER_WIDTH else width
    model = CRA.from_config(
        sections,
        visual_dim=Dv,
        text_dim=Dt,
        visual_dictionary=VisualDictionary(
            torch.randn(params.clusters.visual_k, Dv), torch.ones(params.clusters.visual_k)
        ),
        language_dictionary=LanguageDictionary(
            torch.randn(params.clusters.language_k, len(GRAPH_NODES), Dt), torch.ones(params.clusters.language_k)
        ),
    ).to(device)
    cfg = params.train
    optimizer_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
    text = params.features.text
    batches = [
        random_batch(
            cfg.batch_size, params.decode.num_frames, text.question_max_len, text.answer_max_len, Dv, Dt, device
        )
        for _ in range(4)
    ]
    model.train()

    def step(batch) -> None:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            losses = compute_losses(
                model(batch),
                batch,
                qa_weight=cfg.qa_weight,
                question_discrimination_weight=cfg.question_discrimination_weight,
                cma_weight=params.cma.weight,
            )
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()

    for i in range(warmup):
        step(batches[i % len(batches)])
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    synchronize()
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return steps / seconds, memory


def training_benchmark(args: argparse.Namespace) -> None:
    import torch

    from pipeline.config import load_params
    from pipeline.runtime import autocast_dtype

    params = load_params(args.params)
    device = torch.device(args.device)
    cfg = params.train
    print(
        f"# training: CRA ({params.model.variant}) at width {args.width_model}, {params.model.layers} layers, "
        f"{params.model.heads} heads; batch {cfg.batch_size}, T={params.decode.num_frames}, {NUM_OPTIONS} options; "
        f"{cfg.optimizer} (amsgrad {cfg.amsgrad}); {device}"
    )
    for amp in (None, autocast_dtype(device)) if device.type == "cuda" else (None,):
        rate, memory = train_steps_per_second(
            params, device, width=args.width_model, steps=args.train_steps, warmup=args.train_warmup, amp=amp
        )
        name = "float32" if amp is None else f"autocast {str(amp).replace('torch.', '')}"
        print(
            f"  {name:18s} {rate:8.2f} steps/s = {rate * cfg.batch_size:9.1f} questions/s"
            + (f"  (peak GPU memory {memory:.2f} GiB)" if memory == memory else "")
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="run every code path on the CPU with tiny sizes")
    parser.add_argument("--params", default="params.yaml", help="params for the model and training settings")
    parser.add_argument("--model", default="ViT-L-14", help="open_clip architecture (random init)")
    parser.add_argument("--videos", type=int, default=160, help="manifest rows (videos) of the visual benchmark")
    parser.add_argument("--distinct", type=int, default=32, help="distinct video files the rows point to")
    parser.add_argument("--video-frames", type=int, default=96, help="frames per generated video")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--num-frames", type=int, default=32, help="T sampled frames per video")
    parser.add_argument("--batch-size", type=int, default=256, help="frames per encoder batch")
    parser.add_argument("--num-workers", type=int, default=min(8, max(1, (os.cpu_count() or 2) - 2)))
    parser.add_argument("--prefetch-videos", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="alternating encoder/stage measurements")
    parser.add_argument("--width-model", type=int, default=PAPER_WIDTH, help="model.d_model of the training benchmark")
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--train-warmup", type=int, default=5)
    parser.add_argument("--skip-visual", action="store_true")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("CRA_NO_PROGRESS", "1")

    import torch

    if args.smoke:
        args.device = "cpu"
        args.model, args.videos, args.distinct, args.video_frames, args.num_frames = "ViT-S-32", 4, 2, 8, 4
        args.width, args.height, args.batch_size, args.num_workers, args.repeats = 64, 48, 8, 1, 1
        args.width_model, args.train_steps, args.train_warmup = 64, 2, 1
        print("# smoke run on the CPU: tiny sizes, the figures mean nothing")
    elif not torch.cuda.is_available():
        print(
            f"No CUDA device visible to torch {torch.__version__} (built for CUDA {torch.version.cuda}): the GPU "
            "benchmark was not run. Run it on a machine with a GPU (`python -m benchmarks.gpu`), or check its code "
            "paths on the CPU with `python -m benchmarks.gpu --smoke`."
        )
        return
    else:
        args.device = "cuda"
        print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    start = time.perf_counter()
    if not args.skip_visual:
        visual_benchmark(args)
    if not args.skip_training:
        training_benchmark(args)
    print(f"# total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
