"""Parquet I/O: schema enforcement, metadata, atomic streaming, zero-copy embedding reads, inspect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.artifacts import schemas
from pipeline.artifacts.inspect import describe
from pipeline.artifacts.parquet import (
    ArtifactError,
    StreamWriter,
    fixed_list_to_numpy,
    read_metadata,
    read_table,
    require_metadata,
    write_table,
)


def _features_batch(video_ids: list[str], T: int, D: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((len(video_ids), T, D)).astype(np.float32)
    return {
        "video_id": video_ids,
        "frame_indices": [list(range(T))] * len(video_ids),
        "timestamps": [[t / 2 for t in range(T)]] * len(video_ids),
        "features": feats.reshape(len(video_ids), T, D).tolist(),
    }, feats


def test_stream_writer_round_trip_and_zero_copy(tmp_path: Path):
    T, D = 4, 3
    schema = schemas.visual_features(T, D)
    path = tmp_path / "visual.parquet"
    with StreamWriter(path, schema, {"artifact": "visual_features", "model": "m"}) as out:
        batch1, feats1 = _features_batch(["a", "b"], T, D, 0)
        batch2, feats2 = _features_batch(["c"], T, D, 1)
        out.write(batch1)
        out.write(batch2)
    table = read_table(path, schema)
    assert table.column("video_id").to_pylist() == ["a", "b", "c"]
    array = fixed_list_to_numpy(table.column("features").combine_chunks(), (T, D))
    np.testing.assert_array_equal(array, np.concatenate([feats1, feats2]))
    # A single chunk converts without copying: the numpy array views the Arrow buffer.
    chunk = table.column("features").combine_chunks()
    view = fixed_list_to_numpy(chunk, (T, D))
    arrow_buffer = chunk.values.values.buffers()[1]
    assert view.__array_interface__["data"][0] == arrow_buffer.address
    assert read_metadata(path)["model"] == "m"


def test_stream_writer_leaves_no_file_on_error(tmp_path: Path):
    path = tmp_path / "x.parquet"
    with pytest.raises(RuntimeError):
        with StreamWriter(path, schemas.visual_features(2, 2)) as out:
            out.write(_features_batch(["a"], 2, 2, 0)[0])
            raise RuntimeError("boom")
    assert not path.exists()
    assert not list(tmp_path.iterdir())


def test_write_table_enforces_schema(tmp_path: Path):
    table = pa.table({"video_id": ["a"]})
    with pytest.raises(ArtifactError, match="lacks column"):
        write_table(table, tmp_path / "m.parquet", schemas.VIDEO_MANIFEST)


def test_read_table_rejects_wrong_types(tmp_path: Path):
    path = tmp_path / "v.parquet"
    batch, _ = _features_batch(["a"], 2, 3, 0)
    write_table(pa.table(batch), path, schemas.visual_features(2, 3))
    with pytest.raises(ArtifactError, match="column `features` has type"):
        read_table(path, schemas.visual_features(2, 4))


def test_require_metadata_refuses_mismatch(tmp_path: Path):
    path = tmp_path / "v.parquet"
    batch, _ = _features_batch(["a"], 2, 3, 0)
    write_table(pa.table(batch), path, schemas.visual_features(2, 3), {"model": "ViT-S-32", "num_frames": 2})
    assert require_metadata(path, {"model": "ViT-S-32"}, "features.visual")["num_frames"] == 2
    with pytest.raises(ArtifactError, match="model: artifact has 'ViT-S-32', params want 'ViT-L-14'"):
        require_metadata(path, {"model": "ViT-L-14"}, "features.visual")


def test_missing_artifact_names_the_stage_hint(tmp_path: Path):
    with pytest.raises(ArtifactError, match="does not exist"):
        read_table(tmp_path / "nope.parquet")


def test_inspect_describes_schema_rows_and_metadata(tmp_path: Path):
    path = tmp_path / "v.parquet"
    batch, _ = _features_batch(["a", "b"], 2, 3, 0)
    write_table(pa.table(batch), path, schemas.visual_features(2, 3), {"model": "ViT-S-32"})
    text = describe(path)
    assert "rows: 2" in text
    # Parquet names list children `element`, Arrow `item`: compare the shape, not the child name.
    assert "features: fixed_size_list<" in text and "float>[3]>[2]" in text
    assert '"model": "ViT-S-32"' in text
    assert "video_id='a'" in text
