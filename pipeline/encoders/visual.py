"""The open_clip image encoder of the `visual_features` stage: offline weights, batched preprocessing, encoding.

Weights (`features.visual.pretrained`), never downloaded:
  - `none`: random init, seeded (`RANDOM_INIT_SEED`) so runs agree; logged as a loud warning and
    recorded in the artifact's metadata.
  - a path to a checkpoint file: loaded by open_clip (`pretrained=<path>`), recorded by its sha256.
  - an open_clip tag (e.g. `openai` for ViT-L-14): loaded only when its file is already in the local
    Hugging Face cache (or open_clip's URL cache, ~/.cache/clip). The cache is checked with
    `huggingface_hub.try_to_load_from_cache`, which never touches the network, so a missing file
    fails at once with a `PipelineError` saying how to supply a checkpoint, not after 46 s of hub
    retries. The cached file is then loaded like a path, with the tag's preprocessing and QuickGELU.

Preprocessing reproduces open_clip's eval transform (resize with the model's interpolation and
resize mode, centre crop, normalise with the model's mean/std) on batched tensors. It is split in
two so the costly half runs in the decode workers:
  - `FramePreprocessor` (workers): uint8 (T, H, W, C) frames -> uint8 (T, C, S_h, S_w), resized with
    torchvision's antialiased uint8 kernels, which reproduce PIL's fixed-point resampling (the
    values open_clip's PIL pipeline sees) to within 2 levels of 255 on hard synthetic edges and
    exactly on >99.9% of values; crop with open_clip's own `center_crop_or_pad`.
  - `VisualEncoder.normalize` (main process, on the device): uint8 -> float, (x/255 - mean) / std.
Shipping uint8 between processes (and to the GPU) moves 4x fewer bytes than float.

Encoding is `model.encode_image(x)` without L2 normalisation (downstream normalises where it needs
to); outputs are returned as float32. On CUDA: autocast (bf16 where supported, else fp16), each uint8
batch copied to page-locked memory so that the host-to-device copy is asynchronous, and, for
convolutional towers only (ResNet, ConvNeXt), channels-last weights and inputs, the layout cuDNN's
tensor-core convolutions use; a ViT's only convolution is its patch embedding, where it gains nothing.
On the CPU none of these apply and encoding runs in float32.

Shape notation: B frames in an encoder batch, T frames of one video, H x W decoded frame size,
C = 3 channels, S_h x S_w model input size, D feature width.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import open_clip
import torch
import torchvision.transforms.v2.functional as TF
from open_clip.transform import center_crop_or_pad
from torchvision.transforms import InterpolationMode

from pipeline.artifacts.visual_features import checkpoint_sha256, is_random_init, looks_like_path
from pipeline.errors import PipelineError
from pipeline.runtime import autocast_dtype, get_logger

log = get_logger("visual_encoder")

MODEL_PARAM = "features.visual.model"
PRETRAINED_PARAM = "features.visual.pretrained"
RANDOM_INIT_SEED = 0
# open_clip's URL downloads land here (open_clip.pretrained.download_pretrained_from_url).
OPEN_CLIP_URL_CACHE = Path("~/.cache/clip").expanduser()


def open_clip_version() -> str:
    return importlib.metadata.version("open_clip_torch")


# ---------------------------------------------------------------------------------------------
# Weights


@dataclass(frozen=True)
class WeightsSource:
    """Where the encoder's weights come from, resolved offline."""

    kind: Literal["none", "file", "tag"]
    param: str  # features.visual.pretrained as written
    checkpoint: str | None = None  # the local file open_clip loads (None: random init)
    tag_config: dict[str, Any] = field(default_factory=dict)  # open_clip's config of the tag

    @property
    def record(self) -> str:
        """The metadata's `pretrained`: `none`, the tag, or `sha256:<hex>` of the checkpoint file."""
        if self.kind == "none":
            return "none"
        if self.kind == "tag":
            return self.param
        assert self.checkpoint is not None
        return f"sha256:{checkpoint_sha256(self.checkpoint)}"


def _how_to_supply(model: str, tag: str = "<tag>") -> str:
    return (
        f"Download the checkpoint on a machine with internet access (e.g. "
        f"`python -c \"import open_clip; open_clip.create_model('{model}', pretrained='{tag}')\"` fills the Hugging "
        f"Face cache, or fetch the open_clip_pytorch_model.bin / .safetensors file), copy the file here and set "
        f"{PRETRAINED_PARAM} to its path; or set it to `none` for random weights."
    )


def check_model_name(model: str) -> None:
    """Refuse an architecture open_clip does not ship (hf-hub: / local-dir: schemas included)."""
    known = open_clip.list_models()
    if model not in known:
        close = difflib.get_close_matches(model, known, n=5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise PipelineError(
            f"{MODEL_PARAM} = {model!r} is not an open_clip {open_clip_version()} architecture.{hint} "
            "Use one of `open_clip.list_models()` (the paper: ViT-L-14)."
        )


def _cached_tag_file(tag_config: dict[str, Any], cache_dir: str | Path | None) -> str | None:
    """The local file of a tag's weights, looked up without any network call; None if absent."""
    if tag_config.get("file"):
        return tag_config["file"] if os.path.isfile(tag_config["file"]) else None
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    hf_hub = tag_config.get("hf_hub", "")
    if hf_hub:
        # open_clip's convention: 'org/repo/filename', or 'org/repo/' for the default file name.
        repo_id, filename = os.path.split(hf_hub)
        filename = filename or HF_WEIGHTS_NAME
        candidates = [filename]
        if filename == HF_WEIGHTS_NAME:
            candidates.insert(0, HF_SAFE_WEIGHTS_NAME)  # open_clip prefers the safetensors file
        elif filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for name in candidates:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    url = tag_config.get("url", "")
    if url:
        target = OPEN_CLIP_URL_CACHE / os.path.basename(url)
        if target.is_file():
            return str(target)
    return None


def resolve_weights(model: str, pretrained: str, cache_dir: str | Path | None = None) -> WeightsSource:
    """Resolve `features.visual.pretrained` to local weights, offline; a `PipelineError` otherwise.

    `cache_dir` is the Hugging Face hub cache to search (default: the usual HF_HUB_CACHE).
    """
    check_model_name(model)
    if is_random_init(pretrained):
        return WeightsSource(kind="none", param=pretrained)
    path = Path(pretrained).expanduser()
    if path.is_file():
        return WeightsSource(kind="file", param=pretrained, checkpoint=str(path))
    if path.is_dir():
        raise PipelineError(
            f"{PRETRAINED_PARAM} = {pretrained!r} is a folder; point it at the checkpoint file inside "
            "(e.g. open_clip_pytorch_model.bin or open_clip_model.safetensors)."
        )
    if looks_like_path(pretrained):
        raise PipelineError(
            f"{PRETRAINED_PARAM} = {pretrained!r}: checkpoint file not found (relative paths are from the "
            f"repository root). {_how_to_supply(model)}"
        )
    tags = open_clip.list_pretrained_tags_by_model(model)
    tag_config = open_clip.get_pretrained_cfg(model, pretrained)
    if not tag_config:
        available = f"its tags: {', '.join(tags)}" if tags else "open_clip has no pretrained tag for it"
        raise PipelineError(
            f"{PRETRAINED_PARAM} = {pretrained!r} is neither a file nor an open_clip tag of {model} "
            f"({available}). {_how_to_supply(model)}"
        )
    checkpoint = _cached_tag_file(tag_config, cache_dir)
    if checkpoint is None:
        where = tag_config.get("hf_hub") or tag_config.get("url") or "?"
        raise PipelineError(
            f"{PRETRAINED_PARAM} = {pretrained!r}: the weights of {model}/{pretrained} ({where}) are not in the "
            f"local cache, and this pipeline never downloads. {_how_to_supply(model, pretrained)}"
        )
    return WeightsSource(kind="tag", param=pretrained, checkpoint=checkpoint, tag_config=dict(tag_config))


# ---------------------------------------------------------------------------------------------
# Preprocessing


@dataclass(frozen=True)
class PreprocessSpec:
    """open_clip's eval preprocessing of one model (`model.visual.preprocess_cfg`)."""

    image_size: tuple[int, int]  # (S_h, S_w)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"  # bicubic | bilinear
    resize_mode: str = "shortest"  # shortest | longest | squash
    fill_color: int = 0

    @classmethod
    def from_open_clip(cls, cfg: dict[str, Any]) -> PreprocessSpec:
        size = cfg["size"]
        image_size = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[-1]))
        as3 = lambda v: tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else (v,) * 3))  # noqa: E731
        return cls(
            image_size=image_size,
            mean=as3(cfg["mean"]),
            std=as3(cfg["std"]),
            interpolation=cfg.get("interpolation") or "bicubic",
            resize_mode=cfg.get("resize_mode") or "shortest",
            fill_color=int(cfg.get("fill_color") or 0),
        )

    def to_metadata(self) -> dict[str, Any]:
        meta = asdict(self)
        meta["image_size"] = list(self.image_size)
        meta["mean"], meta["std"] = list(self.mean), list(self.std)
        meta["implementation"] = "torchvision uint8 antialiased resize + open_clip center_crop_or_pad (PIL-equivalent)"
        return meta


@dataclass(frozen=True)
class FramePreprocessor:
    """The resize and crop of open_clip's eval transform, batched: uint8 (T, H, W, C) -> (T, C, S_h, S_w).

    Same output sizes, crop offsets and padding as open_clip's (PIL) transform; values within 2 uint8
    levels of PIL's (see the module docstring). Stays uint8, as the PIL image open_clip resizes;
    normalisation is `VisualEncoder.normalize`. Picklable, so it can run in decode workers.
    """

    spec: PreprocessSpec

    def output_size(self, height: int, width: int) -> list[int]:
        """[h, w] of the resize before the crop, computed as open_clip's transform does."""
        target_h, target_w = self.spec.image_size
        mode = self.spec.resize_mode
        if mode == "squash":
            return [target_h, target_w]
        if mode == "shortest" and target_h == target_w:
            # torchvision Resize(int): short side -> S, long side truncated (int), as for PIL images.
            short, long = (height, width) if height <= width else (width, height)
            new_long = int(target_h * long / short)
            return [target_h, new_long] if height <= width else [new_long, target_h]
        # open_clip's ResizeKeepRatio: shortest (non-square target) or longest edge, rounded.
        ratio_h, ratio_w = height / target_h, width / target_w
        ratio = max(ratio_h, ratio_w) if mode == "longest" else min(ratio_h, ratio_w)
        return [round(height / ratio), round(width / ratio)]

    def _interpolation(self) -> InterpolationMode:
        # ResizeKeepRatio in open_clip's non-square `shortest` branch is built without the
        # interpolation argument, so it is always bicubic there.
        non_square_shortest = self.spec.resize_mode == "shortest" and self.spec.image_size[0] != self.spec.image_size[1]
        if self.spec.interpolation == "bilinear" and not non_square_shortest:
            return InterpolationMode.BILINEAR
        return InterpolationMode.BICUBIC

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        T, H, W, C = frames.shape
        if frames.dtype != np.uint8 or C != 3:
            raise ValueError(f"expected uint8 (T, H, W, 3) RGB frames, got {frames.dtype} {frames.shape}")
        # A channels-last view, no copy: torch's uint8 antialiased kernels run fastest on it.
        x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, C, H, W)
        size = self.output_size(H, W)
        if size != [H, W]:
            x = TF.resize(x, size, interpolation=self._interpolation(), antialias=True)  # (T, C, h, w)
        x = center_crop_or_pad(x, list(self.spec.image_size), fill=self.spec.fill_color)  # (T, C, S_h, S_w)
        return x.contiguous()


# ---------------------------------------------------------------------------------------------
# Encoder


class VisualEncoder:
    """An open_clip model in eval mode with its preprocessing, on one device."""

    def __init__(self, model: Any, model_name: str, weights: WeightsSource, spec: PreprocessSpec, device: Any):
        self.model = model
        self.model_name = model_name
        self.weights = weights
        self.spec = spec
        self.device = device
        self.dim = int(model.visual.output_dim)
        self.autocast = autocast_dtype(device)
        self.channels_last = device.type == "cuda" and not isinstance(model.visual, open_clip.model.VisionTransformer)
        if self.channels_last:
            model.visual.to(memory_format=torch.channels_last)
        # Normalisation folded into one multiply-add on uint8 values: (x/255 - mean)/std.
        mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std

    @property
    def preprocessor(self) -> FramePreprocessor:
        return FramePreprocessor(self.spec)

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, S_h, S_w) -> float32 (B, C, S_h, S_w) on the device, normalised."""
        if self.device.type == "cuda" and not frames.is_pinned():
            # Page-locked (from torch's caching host allocator), so the copy below does not block the host.
            frames = frames.pin_memory()
        x = frames.to(self.device, non_blocking=True).float()  # (B, C, S_h, S_w)
        x = x.mul_(self._scale).add_(self._shift)  # in place: one float copy of the batch
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, S_h, S_w) frames from `preprocessor` -> float32 (B, D) features on the CPU."""
        return self.encode_normalized(self.normalize(frames))

    def encode_normalized(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised float (B, C, S_h, S_w) pixels -> float32 (B, D) `encode_image` outputs on the CPU."""
        B = pixels.shape[0]
        cast = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else nullcontext()
        with torch.inference_mode(), cast:
            features = self.model.encode_image(pixels.to(self.device))  # (B, D)
        assert features.shape == (B, self.dim), features.shape
        return features.float().cpu()

    def weights_digest(self) -> str:
        """sha256 over the image tower's state (names, dtypes, shapes, bytes): processes that encode
        shards of one artifact compare it, so they provably use the same (e.g. seeded random) weights."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.visual.state_dict().items()):
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(flat.view(torch.uint8).numpy().data)
        return f"sha256:{digest.hexdigest()}"

    def metadata(self) -> dict[str, Any]:
        """What the artifact records about the encoder."""
        return {
            "model": self.model_name,
            "pretrained": self.weights.record,
            "pretrained_param": self.weights.param,
            "random_init": self.weights.kind == "none",
            **({"init_seed": RANDOM_INIT_SEED} if self.weights.kind == "none" else {}),
            "open_clip_version": open_clip_version(),
            "preprocessing": self.spec.to_metadata(),
            "dim": self.dim,
            "normalized": False,
            "autocast": str(self.autocast).replace("torch.", "") if self.autocast else None,
        }


def load_encoder(model: str, pretrained: str, device: Any, cache_dir: str | Path | None = None) -> VisualEncoder:
    """Build `model` with `pretrained` weights (resolved offline, see `resolve_weights`) on `device`."""
    weights = resolve_weights(model, pretrained, cache_dir)
    if weights.kind == "none":
        log.warning(
            "!!! %s = none: %s gets RANDOM weights (seed %d). Features are NOT CLIP features; fine for tests and "
            "smoke runs, meaningless for results. Set %s to an open_clip tag or a checkpoint path. !!!",
            PRETRAINED_PARAM,
            model,
            RANDOM_INIT_SEED,
            PRETRAINED_PARAM,
        )
    tag = weights.tag_config
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            clip = open_clip.create_model(
                model,
                pretrained=weights.checkpoint,
                device="cpu",
                force_quick_gelu=bool(tag.get("quick_gelu", False)),
                force_preprocess_cfg={k: tag[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag},
                # Never fetch tower weights from the hub when no CLIP checkpoint is given.
                pretrained_image=False,
                pretrained_text=False,
            )
    except (RuntimeError, OSError, ValueError, KeyError, AssertionError) as err:  # open_clip asserts on shapes
        if weights.checkpoint:
            raise PipelineError(
                f"{PRETRAINED_PARAM} = {pretrained!r}: open_clip could not load {weights.checkpoint} into {model} "
                f"({type(err).__name__}: {str(err)[:400]}). Is it a checkpoint of this architecture ({MODEL_PARAM})?"
            ) from None
        raise PipelineError(f"{MODEL_PARAM} = {model!r} could not be built offline: {err}") from None
    clip.eval().requires_grad_(False)
    clip.to(device)
    spec = PreprocessSpec.from_open_clip(clip.visual.preprocess_cfg)
    encoder = VisualEncoder(clip, model, weights, spec, device)
    source = {
        "none": "random init",
        "file": f"checkpoint {weights.checkpoint}",
        "tag": f"tag {pretrained} ({weights.checkpoint})",
    }
    log.info(
        "visual encoder %s (%s): D=%d, input %s, on %s%s",
        model,
        source[weights.kind],
        encoder.dim,
        "x".join(map(str, spec.image_size)),
        device,
        f", autocast {encoder.autocast}" if encoder.autocast else "",
    )
    return encoder
