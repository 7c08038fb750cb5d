"""The synthetic confounded video question grounding benchmark (DVC stage `generate`).

`build_dataset(cfg)` makes every split's scripts, questions and confounders (fast, no video);
`render_video` draws one script to mp4; `write_annotations` writes the NExT-GQA-format files.
`stages.generate.generate` does all three into an output folder.
"""

from pipeline.data.synthetic.dataset import (
    GENERATOR_VERSION,
    SyntheticDataset,
    VideoRecord,
    agreement_rates,
    build_dataset,
    build_split,
)
from pipeline.data.synthetic.presets import OOD_SPLITS, PRESETS, SPLITS, Preset, get_preset
from pipeline.data.synthetic.render import render_video
from pipeline.data.synthetic.writer import write_annotations

__all__ = [
    "GENERATOR_VERSION",
    "OOD_SPLITS",
    "PRESETS",
    "SPLITS",
    "Preset",
    "SyntheticDataset",
    "VideoRecord",
    "agreement_rates",
    "build_dataset",
    "build_split",
    "get_preset",
    "render_video",
    "write_annotations",
]
