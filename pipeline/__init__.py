"""Pipeline infrastructure: typed config, table schemas and I/O, the CLI, runtime helpers, datasets."""

import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a shared or small
# machine (2 cores, other jobs) spinning threads slowed training steps 6-20x in our measurements;
# on an idle machine the cost is within noise. Set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
