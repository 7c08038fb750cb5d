"""The embedded synthetic benchmark (stage `generate`) -> `QARecord`s.

The generator writes exactly NExT-GQA's file format (`{split}.csv`, `gsub_{split}.json`,
`map_vid_vidorID.json`; videos under `<paths.synthetic>/videos/<folder>/<video_id>.mp4`; splits
train / val / test_iid / test_ood; no `frame2time`), so this adapter is the NExT-GQA reader with
error messages that point at `generate`.
"""

from __future__ import annotations

import dataclasses

from pipeline.config import DataConfig
from pipeline.data.datasets import nextgqa
from pipeline.data.datasets.base import LoadedDataset

_HINT = " (run `dvc repro generate` or `python -m pipeline generate` to make the synthetic benchmark)"


def load(data: DataConfig) -> LoadedDataset:
    return dataclasses.replace(nextgqa.load(data, missing_hint=_HINT), name="synthetic")
