"""Stage `confounders`: cluster CRA's visual and linguistic confounder dictionaries.

Visual dictionary: MiniBatchKMeans with K = `clusters.visual_k` (512 in the paper) over every frame
feature of every TRAINING-split video (N videos x T frames = N*T points of Dv dims).
Linguistic dictionary: each training question's 8-node semantic graph (the `svo` stage), every node
embedded by the text encoder's pooled vector (an empty node is a zero vector; each distinct node
string is encoded once), flattened to G*Dt dims and clustered into K = `clusters.language_k`
prototypes, stored reshaped to (G, Dt).

Points are clustered from one in-memory array, not streamed through `partial_fit`: `fit` gives
k-means++ initialisation on a sample, `n_init` restarts, early stopping and the final full-data
assignment (cluster sizes, inertia) for free, and the arrays are small (NExT-GQA train at the
paper's width: ~3.9k videos x 32 frames x 768 floats = 0.4 GB; 34k graphs x 8 x 768 = 0.8 GB).

A K larger than the number of distinct points cannot be honoured: `clusters.on_too_few_points`
either reduces K (with a warning, recorded in the metadata as `k_reduced`) or stops with an error.
When K equals the number of distinct points, each distinct point is its own cluster (no k-means).
Cluster sizes, empty clusters, inertia and K are logged and stored in each file's metadata.
Results are deterministic for a given `clusters.seed`. Output and reader: `pipeline.artifacts.confounders`.

Shape notation: N points, F point width (Dv, or G*Dt), K clusters, T frames, G graph nodes (8).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.graph_nodes import GRAPH_NODES
from pipeline.artifacts import schemas
from pipeline.artifacts.confounders import LANGUAGE_ARTIFACT, LANGUAGE_FILE, VISUAL_ARTIFACT, VISUAL_FILE
from pipeline.artifacts.parquet import numpy_to_fixed_list, read_metadata, read_table, write_table
from pipeline.artifacts.text_features import POOLING
from pipeline.artifacts.visual_features import VisualFeatures, expected_visual_metadata, read_visual_features
from pipeline.config import ClustersConfig, Params
from pipeline.encoders.text import TextEncoder, embed_graph_nodes, load_text_encoder
from pipeline.errors import PipelineError
from pipeline.runtime import get_logger, resolve_device, timed

log = get_logger("confounders")

# Graph nodes read from the answer side get the answer token budget, the others the question's.
ANSWER_NODES = ("answer", "answer_verbs", "answer_objects")


@dataclass(frozen=True)
class Dictionary:
    """A fitted confounder dictionary."""

    centers: np.ndarray  # (K, F) float32
    sizes: np.ndarray  # (K,) int64: training points assigned to each cluster
    prior: np.ndarray  # (K,) float32: sizes / N
    stats: dict[str, Any]  # k_requested, k_used, n_points, empty_clusters, size_*, inertia, ...


def distinct_rows(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of an (N, F) array, compared byte-wise: (first row of each (U,), count of each (U,))."""
    rows = np.ascontiguousarray(points)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)  # (N,) row keys
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    return first, counts


def choose_k(k_requested: int, n_points: int, n_distinct: int, policy: str, param: str, what: str) -> int:
    """K to fit: `k_requested`, or the number of distinct points when there are fewer of them."""
    if n_points == 0:
        raise PipelineError(
            f"no {what} to cluster for `{param}`: the training split has none; check `data.train_split`"
        )
    if k_requested <= n_distinct:
        return k_requested
    if policy == "error":
        raise PipelineError(
            f"params: `{param}` = {k_requested} exceeds the {n_distinct} distinct {what} ({n_points} points) "
            f"of the training split; lower `{param}` or set `clusters.on_too_few_points: reduce`"
        )
    log.warning(
        "`%s` = %d exceeds the %d distinct %s (%d points): reducing K to %d (clusters.on_too_few_points=reduce)",
        param,
        k_requested,
        n_distinct,
        what,
        n_points,
        n_distinct,
    )
    return n_distinct


def minibatch_kmeans(
    points: np.ndarray, k: int, cfg: ClustersConfig, what: str
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Seeded MiniBatchKMeans on (N, F) points: centers (K, F), sizes (K,), inertia, mini-batch steps."""
    from sklearn.cluster import MiniBatchKMeans

    kmeans = MiniBatchKMeans(
        n_clusters=k,
        batch_size=cfg.batch_size,
        max_iter=cfg.max_iter,
        random_state=cfg.seed,
        n_init=3,
        init_size=max(3 * cfg.batch_size, 3 * k),  # sklearn clips it to N
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kmeans.fit(points)
    for warning in caught:
        log.warning("%s clustering: %s", what, warning.message)
    sizes = np.bincount(kmeans.labels_, minlength=k).astype(np.int64)  # full-data assignment
    return kmeans.cluster_centers_, sizes, float(kmeans.inertia_), int(kmeans.n_steps_)


def fit_dictionary(points: np.ndarray, k_requested: int, cfg: ClustersConfig, param: str, what: str) -> Dictionary:
    """Cluster (N, F) `points` into K centers; `param` names the K param in messages."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    n_points = points.shape[0]
    first, counts = distinct_rows(points) if n_points else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    n_distinct = len(first)
    k = choose_k(k_requested, n_points, n_distinct, cfg.on_too_few_points, param, what)
    if k == n_distinct:
        # The optimum is known: every distinct point is its own cluster (inertia 0). Mini-batch
        # updates would only risk leaving a cluster empty (random reassignment of small clusters).
        method, centers, sizes, inertia, steps = "distinct_points", points[first], counts.astype(np.int64), 0.0, 0
    else:
        method = "minibatch_kmeans"
        centers, sizes, inertia, steps = minibatch_kmeans(points, k, cfg, what)
    stats = {
        "k_requested": k_requested,
        "k_used": k,
        "k_reduced": k < k_requested,
        "n_points": n_points,
        "n_distinct": n_distinct,
        "empty_clusters": int((sizes == 0).sum()),
        "size_min": int(sizes.min()),
        "size_median": float(np.median(sizes)),
        "size_max": int(sizes.max()),
        "inertia": inertia,
        "method": method,
        "n_steps": steps,
        "batch_size": cfg.batch_size,
        "max_iter": cfg.max_iter,
    }
    log.info(
        "%s: K=%d (asked %d) over %d points: sizes min %d / median %.1f / max %d, %d empty, inertia %.4g",
        what,
        k,
        k_requested,
        n_points,
        stats["size_min"],
        stats["size_median"],
        stats["size_max"],
        stats["empty_clusters"],
        stats["inertia"],
    )
    return Dictionary(
        centers=np.asarray(centers, dtype=np.float32),
        sizes=sizes,
        prior=(sizes / n_points).astype(np.float32),
        stats=stats,
    )


def dictionary_table(dictionary: Dictionary, column: str, row_shape: tuple[int, ...]) -> pa.Table:
    """Rows cluster_id, size, prior, `column` (centers reshaped to (K, *row_shape))."""
    k = len(dictionary.sizes)
    return pa.table(
        {
            "cluster_id": pa.array(np.arange(k, dtype=np.int32)),
            "size": pa.array(dictionary.sizes),
            "prior": pa.array(dictionary.prior),
            column: numpy_to_fixed_list(dictionary.centers.reshape(k, *row_shape)),
        }
    )


def scalar_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The scalar entries of an input artifact's metadata: what it was made with, not its lists."""
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) or v is None}


def training_video_ids(qa_path: str | Path, train_split: str) -> set[str]:
    table = read_table(qa_path, schemas.QA, columns=["split", "video_id"])
    train = table.filter(pc.equal(table.column("split"), train_split))
    if train.num_rows == 0:
        splits = sorted(set(table.column("split").to_pylist()))
        raise PipelineError(f"{qa_path} has no question of `data.train_split` = {train_split!r} (splits: {splits})")
    return set(train.column("video_id").to_pylist())


def training_frame_features(visual: VisualFeatures, video_ids: set[str]) -> tuple[np.ndarray, dict[str, int]]:
    """(N*T, Dv) float32 frame features of the videos in `video_ids` that have features, with counts."""
    present = sorted(video_ids.intersection(visual.video_ids))
    frames = visual.select(present)  # (N, T, Dv)
    _, num_frames, dim = visual.features.shape
    counts = {"n_videos": len(present), "n_videos_missing": len(video_ids) - len(present), "num_frames": num_frames}
    if counts["n_videos_missing"]:
        log.warning(
            "%d of %d training videos have no visual features (skipped by visual_features)",
            counts["n_videos_missing"],
            len(video_ids),
        )
    return frames.reshape(-1, dim).astype(np.float32), counts  # (N*T, Dv)


def training_graphs(svo_path: str | Path, train_split: str) -> list[list[str]]:
    """The G node strings of every training question's graph, in GRAPH_NODES order."""
    node_columns = [f"node_{name}" for name in GRAPH_NODES]
    table = read_table(svo_path, schemas.SVO_GRAPHS, columns=["split", *node_columns])
    table = table.filter(pc.equal(table.column("split"), train_split))
    columns = [table.column(name).to_pylist() for name in node_columns]
    return [[text or "" for text in row] for row in zip(*columns, strict=True)]


def node_max_lens(question_max_len: int, answer_max_len: int) -> list[int]:
    return [answer_max_len if name in ANSWER_NODES else question_max_len for name in GRAPH_NODES]


def build_language_dictionary(encoder: TextEncoder, graphs: Sequence[Sequence[str]], params: Params) -> Dictionary:
    """Embed the graphs node by node, (N, G, Dt), and cluster them flattened to (N, G*Dt)."""
    text = params.features.text
    lens = node_max_lens(text.question_max_len, text.answer_max_len)
    embedded = embed_graph_nodes(encoder, graphs, lens, desc="encode graph nodes")  # (N, G, Dt)
    points = embedded.reshape(len(graphs), -1)  # (N, G*Dt)
    return fit_dictionary(points, params.clusters.language_k, params.clusters, "clusters.language_k", "graphs")


def run(params: Params) -> None:
    paths, clusters = params.paths, params.clusters
    out_dir = Path(paths.confounders)
    train_split = params.data.train_split
    common = {"train_split": train_split, "seed": clusters.seed}

    video_ids = training_video_ids(paths.qa_table, train_split)
    visual_features = read_visual_features(paths.visual_features, expected_visual_metadata(params))
    frames, counts = training_frame_features(visual_features, video_ids)
    visual_source = scalar_metadata(visual_features.metadata)
    del visual_features  # the other splits' features are not needed any more
    with timed(log, "visual clustering"):
        visual = fit_dictionary(frames, clusters.visual_k, clusters, "clusters.visual_k", "frame features")
    dim = frames.shape[1]
    visual_meta = {
        "artifact": VISUAL_ARTIFACT,
        "visual_model": params.features.visual.model,
        "visual_pretrained": params.features.visual.pretrained,
        "visual_source": visual_source,
        "dim": dim,
        **counts,
        **common,
        **visual.stats,
    }
    write_table(
        dictionary_table(visual, "centroid", (dim,)), out_dir / VISUAL_FILE, schemas.visual_dictionary(dim), visual_meta
    )

    graphs = training_graphs(paths.svo_graphs, train_split)
    text = params.features.text
    encoder = load_text_encoder(text.model, resolve_device(params.features.device), batch_size=text.batch_size)
    with timed(log, "linguistic dictionary"):
        language = build_language_dictionary(encoder, graphs, params)
    language_meta = {
        "artifact": LANGUAGE_ARTIFACT,
        "text_model": text.model,
        "text_model_source": encoder.source.description,
        "text_model_checksum": encoder.source.checksum,
        "dim": encoder.dim,
        "pooling": POOLING,
        "question_max_len": text.question_max_len,
        "answer_max_len": text.answer_max_len,
        "graph_nodes": list(GRAPH_NODES),
        "node_max_lens": node_max_lens(text.question_max_len, text.answer_max_len),
        "svo_source": scalar_metadata(read_metadata(paths.svo_graphs)),
        "n_questions": len(graphs),
        **common,
        **language.stats,
    }
    write_table(
        dictionary_table(language, "prototype", (len(GRAPH_NODES), encoder.dim)),
        out_dir / LANGUAGE_FILE,
        schemas.language_dictionary(encoder.dim),
        language_meta,
    )
