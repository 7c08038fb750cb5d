"""Size presets of the synthetic benchmark (`synthetic.preset` in params.yaml).

| preset  | videos (train/val/test_iid/test_ood) | durations | questions/video | use                                   |
|---------|--------------------------------------|-----------|-----------------|---------------------------------------|
| tiny    | 16 (7/3/3/3)                         | 8-14 s    | 4-8             | tests, a few seconds                  |
| default | 240 (150/30/30/30)                   | 8-40 s    | 6-10            | whole pipeline < 10 min on 2 CPUs     |
| large   | 960 (600/120/120/120)                | 8-40 s    | 6-10            | ~4x default, a GPU or a patient CPU   |

`default` is sized by the slowest downstream stage: the random-init ViT-S-32 encodes ~50 frames/s
on a 2-core CPU and reads 32 frames per video, so 240 videos cost ~2.5 min of visual features.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import PipelineError

SPLITS: tuple[str, ...] = ("train", "val", "test_iid", "test_ood")
# Splits whose nuisances are drawn independently of the answer (the others keep rho).
OOD_SPLITS: frozenset[str] = frozenset({"test_ood"})


@dataclass(frozen=True)
class Preset:
    name: str
    videos: dict[str, int]  # per split, in SPLITS order
    min_duration_s: int
    max_duration_s: int
    fps_choices: tuple[int, ...]
    min_questions: int  # per video, target drawn uniformly in [min, max]
    max_questions: int

    @property
    def total_videos(self) -> int:
        return sum(self.videos.values())

    def split_sizes(self, total_videos: int | None) -> dict[str, int]:
        """Videos per split; `total_videos` rescales the preset's proportions (largest remainder)."""
        if total_videos is None:
            return dict(self.videos)
        if total_videos < len(SPLITS):
            raise PipelineError(
                f"generate: --videos {total_videos} is too few; each of the {len(SPLITS)} splits "
                f"({', '.join(SPLITS)}) needs at least one video"
            )
        base = self.total_videos
        exact = {s: total_videos * self.videos[s] / base for s in SPLITS}
        sizes = {s: max(1, int(exact[s])) for s in SPLITS}
        # Hand out what rounding left (or take back what `max(1, .)` added) by largest remainder,
        # ties broken by split order so the result does not depend on dict or float quirks.
        by_remainder = sorted(SPLITS, key=lambda s: (-(exact[s] - int(exact[s])), SPLITS.index(s)))
        i = 0
        while sum(sizes.values()) < total_videos:
            sizes[by_remainder[i % len(SPLITS)]] += 1
            i += 1
        while sum(sizes.values()) > total_videos:
            largest = max(SPLITS, key=lambda s: (sizes[s], -SPLITS.index(s)))
            sizes[largest] -= 1
        return sizes


_STANDARD = dict(min_duration_s=8, max_duration_s=40, fps_choices=(8, 10, 12, 15), min_questions=6, max_questions=10)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny",
        videos={"train": 7, "val": 3, "test_iid": 3, "test_ood": 3},
        min_duration_s=8,
        max_duration_s=14,
        fps_choices=(8, 10, 12, 15),
        min_questions=4,
        max_questions=8,
    ),
    "default": Preset("default", videos={"train": 150, "val": 30, "test_iid": 30, "test_ood": 30}, **_STANDARD),
    "large": Preset("large", videos={"train": 600, "val": 120, "test_iid": 120, "test_ood": 120}, **_STANDARD),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise PipelineError(
            f"params: `synthetic.preset` {name!r} is unknown; choose one of {', '.join(PRESETS)}"
        ) from None
