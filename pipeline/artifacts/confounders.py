"""The confounder dictionaries (`paths.confounders`): layout, expected metadata and reader.

  visual.parquet    Kv cluster centroids of training-split frame features, (Dv,) each
  language.parquet  Kl prototypes of training questions' 8-node semantic graphs, (G, Dt) each

Each row has `cluster_id` (0..K-1, the row order), `size` (training points assigned) and
`prior` = size / total, the P(z) of CRA's backdoor/front-door adjustment. Empty clusters are kept
(prior 0). This module imports neither torch nor scikit-learn.

Shape notation: Kv / Kl clusters, Dv visual width, Dt text width, G graph nodes (8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from models.graph_nodes import GRAPH_NODES
from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import ArtifactError, fixed_list_to_numpy, read_metadata, read_table, require_metadata

VISUAL_FILE = "visual.parquet"
LANGUAGE_FILE = "language.parquet"
VISUAL_ARTIFACT = "confounders/visual"
LANGUAGE_ARTIFACT = "confounders/language"
PARAM_HINT = "`clusters.*`, `features.*` or `data.train_split` in params.yaml"


class Confounders(NamedTuple):
    """What `read_confounders` returns; unpacks as a 5-tuple in this order."""

    visual_centroids: np.ndarray  # (Kv, Dv) float32
    visual_prior: np.ndarray  # (Kv,) float32, sums to 1
    language_prototypes: np.ndarray  # (Kl, G, Dt) float32
    language_prior: np.ndarray  # (Kl,) float32, sums to 1
    metadata: dict[str, dict[str, Any]]  # {"visual": {...}, "language": {...}}


def expected_confounder_metadata(params: Any) -> dict[str, dict[str, Any]]:
    """Metadata each dictionary must carry to be used with `params` (a `Params`)."""
    clusters, visual, text = params.clusters, params.features.visual, params.features.text
    common = {"train_split": params.data.train_split, "seed": clusters.seed}
    return {
        "visual": {
            "artifact": VISUAL_ARTIFACT,
            "visual_model": visual.model,
            "visual_pretrained": visual.pretrained,
            "k_requested": clusters.visual_k,
            **common,
        },
        "language": {
            "artifact": LANGUAGE_ARTIFACT,
            "text_model": text.model,
            "question_max_len": text.question_max_len,
            "answer_max_len": text.answer_max_len,
            "k_requested": clusters.language_k,
            **common,
        },
    }


def _read_dictionary(
    path: Path, expected: dict[str, Any] | None, column: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    meta = require_metadata(path, expected, PARAM_HINT) if expected is not None else read_metadata(path)
    dim = int(meta["dim"])
    if column == "centroid":
        schema, shape = schemas.visual_dictionary(dim), (dim,)
    else:
        schema, shape = schemas.language_dictionary(dim), (len(GRAPH_NODES), dim)
    table = read_table(path, schema)
    ids = table.column("cluster_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))) or len(ids) != meta.get("k_used"):
        raise ArtifactError(
            f"{path}: cluster ids are not 0..{meta.get('k_used')}-1 in order; re-run the confounders stage"
        )
    centers = fixed_list_to_numpy(table.column(column), shape)
    prior = table.column("prior").to_numpy()
    return centers, prior, meta


def read_confounders(folder: str | Path, expected: dict[str, dict[str, Any]] | None = None) -> Confounders:
    """Read both dictionaries. With `expected` (see `expected_confounder_metadata`), refuse ones built
    from other features, K, seed or training split than the reader's params."""
    folder = Path(folder)
    expected = expected or {}
    visual, visual_prior, visual_meta = _read_dictionary(folder / VISUAL_FILE, expected.get("visual"), "centroid")
    language, language_prior, language_meta = _read_dictionary(
        folder / LANGUAGE_FILE, expected.get("language"), "prototype"
    )
    return Confounders(
        visual_centroids=visual,
        visual_prior=visual_prior,
        language_prototypes=language,
        language_prior=language_prior,
        metadata={"visual": visual_meta, "language": language_meta},
    )
