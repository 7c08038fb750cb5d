"""How the frames of many videos are packed into encoder batches, and the chunks batches never cross.

`FrameBatcher` packs the frames of consecutive videos into batches of exactly `batch_size` frames (a
batch spans videos: no video waits for a full batch of its own) and splits the features back per
video. `chunk_videos` sizes the runs of consecutive videos that a batch never crosses: ranks of a
multi-process run share out whole chunks, so every batch holds the same frames, and every video gets
the same features bit for bit, for any number of ranks (batched matmuls are not bit-identical across
batch sizes or positions on every CPU or GPU).

Shape notation: T frames per video, B frames per encoder batch, D feature width.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# Chunks: at most MAX_CHUNKS of them, each at most MAX_CHUNK_BATCHES batches' worth before that.
MAX_CHUNKS = 256
MAX_CHUNK_BATCHES = 16


def chunk_videos(num_videos: int, num_frames: int, batch_size: int) -> int:
    """Videos per chunk: runs of consecutive videos that encoder batches never cross.

    Ranks share out whole chunks, so every batch holds the same frames, and every video gets the same
    features bit for bit, for any number of ranks. A chunk is the fewest whole videos that fill whole
    batches (batch_size / gcd(batch_size, T); no batch is cut short), capped at MAX_CHUNK_BATCHES
    batches' worth, then grown to keep at most MAX_CHUNKS chunks.
    """
    exact = batch_size // math.gcd(batch_size, num_frames)
    base = min(exact, max(1, -(-MAX_CHUNK_BATCHES * batch_size // num_frames)))
    return base * max(1, -(-num_videos // (base * MAX_CHUNKS)))


@dataclass
class _PendingVideo:
    key: Any
    frames: Any  # (T, ...) tensor; dropped once every frame is in a batch
    features: np.ndarray  # (T, D) float32, filled batch by batch
    batched: int = 0  # frames handed to the encoder so far


class FrameBatcher:
    """Packs the frames of consecutive videos into encoder batches of exactly `batch_size` frames.

    `add(key, frames)` queues a video's (T, ...) frames, encodes every full batch now possible with
    `encode` ((B, ...) -> (B, D) tensor), and returns the videos whose T features are all done, as
    `(key, (T, D) float32)`, in the order they were added; `finish()` encodes the remainder. At
    most `batch_size` frames plus one video wait here.
    """

    def __init__(self, batch_size: int, dim: int, encode: Callable[[Any], Any]):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.dim = dim
        self.encode = encode
        self.frames_encoded = 0
        self._waiting: deque[_PendingVideo] = deque()  # videos with frames not yet encoded
        self._buffered = 0  # frames waiting

    def add(self, key: Any, frames: Any) -> list[tuple[Any, np.ndarray]]:
        num_frames = len(frames)
        self._waiting.append(_PendingVideo(key, frames, np.empty((num_frames, self.dim), dtype=np.float32)))
        self._buffered += num_frames
        done: list[tuple[Any, np.ndarray]] = []
        while self._buffered >= self.batch_size:
            done += self._encode_batch(self.batch_size)
        return done

    def finish(self) -> list[tuple[Any, np.ndarray]]:
        return self._encode_batch(self._buffered) if self._buffered else []

    def _encode_batch(self, size: int) -> list[tuple[Any, np.ndarray]]:
        pieces, slots, taken = [], [], 0
        for video in self._waiting:
            if taken == size:
                break
            count = min(size - taken, len(video.features) - video.batched)
            if count == 0:
                continue
            pieces.append(video.frames[video.batched : video.batched + count])
            slots.append((video, video.batched, count))
            video.batched += count
            taken += count
            if video.batched == len(video.features):
                video.frames = None  # the batch holds what it needs; free the rest now
        batch = pieces[0] if len(pieces) == 1 else torch.cat(pieces)  # (B, C, S_h, S_w)
        features = self.encode(batch).numpy()  # (B, D)
        offset = 0
        for video, start, count in slots:
            video.features[start : start + count] = features[offset : offset + count]
            offset += count
        self._buffered -= size
        self.frames_encoded += size
        done = []
        while self._waiting and self._waiting[0].batched == len(self._waiting[0].features):
            video = self._waiting.popleft()
            done.append((video.key, video.features))
        return done
