"""Stand-ins for native calls that hang, for the timeout tests.

They live in their own light module because `pipeline.data.isolation.IsolatedWorker` runs them in a
spawned child, which imports a function's module by name (a test module would pull in pytest and cv2).
A file whose name contains "hang" makes them sleep far beyond any test's time limit; any other file
goes to the real function.
"""

from __future__ import annotations

import time
from pathlib import Path

HANG_SECONDS = 600


def sleepy_probe(path: str):
    from pipeline.data.video import probe_video

    if "hang" in Path(path).name:
        time.sleep(HANG_SECONDS)
    return probe_video(path)


def sleepy_reader(path: str, unique_indices, size=None, num_threads: int = 1):
    from pipeline.data.decode import read_frames

    if "hang" in Path(path).name:
        time.sleep(HANG_SECONDS)
    return read_frames(path, unique_indices, size, num_threads)
