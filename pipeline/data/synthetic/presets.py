"""Size presets of the synthetic benchmark (`synthetic.preset` in params.yaml).

| preset        | videos (train/val/test_iid/test_ood) | questions | compositional | use                          |
|---------------|--------------------------------------|-----------|---------------|------------------------------|
| tiny          | 16 (7/3/3/3), 12-16 s                | 96        | ~1/6          | tests, seconds               |
| default       | 860 (600/60/100/100), 12-30 s        | 5,160     | ~1/6          | the default run, < 10 min    |
| large         | 3,440 (2400/240/400/400), 12-30 s    | 20,640    | ~1/6          | 4x default, GPU / patient CPU|
| compositional | 860 (600/60/100/100), 12-30 s        | 5,160     | 1/2           | harder mix; sized for T = 32 |

Every video has 6 objects and 6 questions (one per object). `repeat_actor_weights[r]` is the
probability that a video has r repeat actors (objects acting twice): each asks one compositional
question (TN/TP/CW), the single actors one "what did X do" (DO) question; so the preset sets the
mix of families. `num_frames` is the frame count T the timelines are sized for (every event lasts
at least 1.6 sample spacings of a T-frame uniform sampling): use `decode.num_frames` >= it.

`default` is sized by two needs: 100 videos (600 questions) in each test split, so that a video-bootstrap
interval is a few points wide, and 600 training videos, because with half as many the default model
overfits and stays below the learnability gate (measured, TempCLIP on random-init features, no planted
shortcut: 57-58 % test Acc@QA with 300 training videos, 69-70 % with 600). The slowest stage is the
random-init ViT-S-32: ~50-120 frames/s on 2 CPU cores, so 860 videos x 16 frames take 2-4 minutes.
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
    repeat_actor_weights: tuple[float, ...]  # P(r repeat actors), r = 0, 1, ...
    num_frames: int = 16

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


_STANDARD = dict(min_duration_s=12, max_duration_s=30, fps_choices=(8, 10, 12, 15))
_MIX = (0.25, 0.5, 0.25)  # 0, 1 or 2 repeat actors: 1 of 6 questions compositional on average

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny",
        videos={"train": 7, "val": 3, "test_iid": 3, "test_ood": 3},
        min_duration_s=12,
        max_duration_s=16,
        fps_choices=(8, 10, 12, 15),
        repeat_actor_weights=_MIX,
    ),
    "default": Preset(
        "default",
        videos={"train": 600, "val": 60, "test_iid": 100, "test_ood": 100},
        repeat_actor_weights=_MIX,
        **_STANDARD,
    ),
    "large": Preset(
        "large",
        videos={"train": 2400, "val": 240, "test_iid": 400, "test_ood": 400},
        repeat_actor_weights=_MIX,
        **_STANDARD,
    ),
    "compositional": Preset(
        "compositional",
        videos={"train": 600, "val": 60, "test_iid": 100, "test_ood": 100},
        repeat_actor_weights=(0.0, 0.0, 0.0, 1.0),
        num_frames=32,
        **_STANDARD,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise PipelineError(
            f"params: `synthetic.preset` {name!r} is unknown; choose one of {', '.join(PRESETS)}"
        ) from None
