"""Pipeline infrastructure, grouped by what each part does in the DAG.

    cli.py, __main__.py              the `cra` / `python -m pipeline` commands (call `stages/`)
    evaluation/                      scoring (official NExT-GQA metrics) and running a model over a split
    training/                        model inputs assembled from the feature artifacts
    data/                            dataset adapters, the synthetic generator, video probing and decoding
    encoders/                        visual and text encoders, dependency parsers, semantic graphs
    artifacts/                       Parquet schemas, readers and writers of every artifact, checkpoints
    config.py, errors.py, runtime.py typed params, user-facing errors, seeding/devices/logging
    distributed.py                   a stage as several processes (torchrun, process groups, shards)

Imports only go down this list (`evaluation` may use `training`; `data` and `encoders` may use
`artifacts`), and `pipeline/` may import `models/`, never `stages/` (except the CLI, which runs them).
`tests/test_layout.py` checks it.
"""

import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a shared or small
# machine (2 cores, other jobs) spinning threads slowed training steps 6-20x in our measurements;
# on an idle machine the cost is within noise. Set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
