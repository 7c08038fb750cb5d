"""Feature extraction as several processes: sharding, part files, the merge, and real torchrun runs (gloo).

In-process tests run the ranks' steps one after the other (each rank's part, then rank 0's merge) with
the tiny open_clip ViT of tests/test_visual_features.py. The torchrun tests run the stages as 2 real
processes; they use ViT-S-32 (random init), since a fresh process does not see the tiny model.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import ArtifactError, read_metadata, write_table
from pipeline.artifacts.shards import file_checksum, parts_dir, require_parts
from pipeline.artifacts.text_features import file_name
from pipeline.artifacts.visual_features import read_visual_features
from pipeline.config import LaunchConfig, Params, build, load_params
from pipeline.distributed import balanced_ranges, torchrun_command
from pipeline.encoders.frame_batches import MAX_CHUNK_BATCHES, MAX_CHUNKS, chunk_videos
from pipeline.encoders.text import load_text_encoder
from pipeline.encoders.visual import load_encoder
from stages import text_features, visual_features
from tests.conftest import REPO_ROOT
from tests.test_text_features import QA_ROWS, _qa_table
from tests.test_visual_features import (  # noqa: F401  (tiny_model_config registers the tiny model)
    TINY_MODEL,
    make_video,
    manifest_row,
    tiny_model_config,
    write_manifest,
)

T = 4
BATCH = 6  # 3 videos of T = 4 frames fill 2 batches: chunks of 3 videos
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Sharding plans


@pytest.mark.parametrize(
    "weights, count",
    [([5] * 10, 3), ([1, 9, 1, 9, 1, 9], 2), ([3] * 4, 7), ([0, 0, 4], 2), ([], 2), ([2, 2, 2, 2], 1)],
)
def test_balanced_ranges_are_contiguous_complete_and_balanced(weights, count):
    ranges = balanced_ranges(weights, count)
    assert len(ranges) == count
    assert [i for r in ranges for i in r] == list(range(len(weights)))
    ideal = sum(weights) / count
    for r in ranges:
        assert abs(sum(weights[i] for i in r) - ideal) <= max(weights, default=0)
    assert balanced_ranges(weights, count) == ranges


def test_balanced_ranges_balance_weights_not_unit_counts():
    # One heavy unit against many light ones: 1 unit vs 6, the same weight each.
    assert balanced_ranges([6, 1, 1, 1, 1, 1, 1], 2) == [range(0, 1), range(1, 7)]


@pytest.mark.parametrize("num_frames, batch_size", [(32, 64), (8, 32), (4, 6), (32, 48), (31, 64), (5, 1)])
def test_chunks_hold_whole_batches_and_stay_few(num_frames, batch_size):
    exact = batch_size // math.gcd(batch_size, num_frames)  # the fewest whole videos that fill whole batches
    for num_videos in (1, 17, 240, 5440, 100_000):
        chunk = chunk_videos(num_videos, num_frames, batch_size)
        assert -(-num_videos // chunk) <= MAX_CHUNKS
        if exact * num_frames <= MAX_CHUNK_BATCHES * batch_size:  # else capped: a short batch per chunk
            assert chunk % exact == 0 and chunk * num_frames % batch_size == 0
    assert chunk_videos(240, 32, 64) == 2  # the default benchmark: 1 batch per chunk, 120 chunks


def test_torchrun_command_one_machine_and_two():
    one = torchrun_command("/venv/bin/python", LaunchConfig(nproc_per_node=4), ["pipeline", "text-features"])
    assert one == [
        "/venv/bin/python",
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=4",
        "--standalone",
        "-m",
        "pipeline",
        "text-features",
    ]
    two = torchrun_command("py", LaunchConfig(nproc_per_node=8, nnodes=2, node_rank=1, rdzv_endpoint="n0:29400"), [])
    assert two[3:] == [
        "--nproc-per-node=8",
        "--nnodes=2",
        "--node-rank=1",
        "--master-addr=n0",
        "--master-port=29400",
        "-m",
    ]


@pytest.mark.parametrize(
    "override, message",
    [
        ("features.launch.nproc_per_node=0", "nproc_per_node` must be >= 1"),
        ("features.launch.node_rank=1", r"node_rank` must be in \[0, nnodes - 1\]"),
        ("features.launch.rdzv_endpoint=node0", "rdzv_endpoint` must be host:port"),
    ],
)
def test_bad_launch_params_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_params(REPO_ROOT / "params.yaml", [override])


# ---------------------------------------------------------------------------------------------
# Visual features: parts and merge, ranks run one after the other in this process


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Eight ok videos (9..16 frames), a missing row and a corrupt file (which fails in rank 0's shard)."""
    folder = tmp_path_factory.mktemp("clips")
    rows = [
        manifest_row(f"vid{k}", make_video(folder / f"vid{k}.mp4", 9 + k, seed=k), [0, 2, 5, 8], 9 + k)
        for k in range(8)
    ]
    garbage = folder / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    rows.insert(1, manifest_row("garbage", garbage, [0, 1, 2, 3], 10))
    rows.insert(4, manifest_row("absent", folder / "absent.mp4", [], 0, status="missing"))
    rows[4]["frame_indices"] = rows[4]["timestamps"] = None
    return write_manifest(folder / "videos.parquet", rows)


def visual_params(tmp_path: Path, manifest: Path, model: str = TINY_MODEL, nproc: int = 1) -> Params:
    tree = {
        "paths": {"video_manifest": str(manifest), "visual_features": str(tmp_path / "v.pq")},
        "decode": {"num_frames": T},
        "gsg": {"kernel_size": 3},  # <= T, as load_params (in each process) checks
        "features": {
            "device": "cpu",
            "launch": {"nproc_per_node": nproc},
            "visual": {"model": model, "pretrained": "none", "batch_size": BATCH, "num_workers": 1},
        },
    }
    return build(Params, tree)


def plan(params: Params, encoder, count: int) -> visual_features.ShardedExtraction:
    requests = visual_features.load_video_requests(params.paths.video_manifest, T)
    return visual_features.ShardedExtraction.plan(
        requests,
        encoder,
        params.paths.visual_features,
        count,
        num_frames=T,
        dtype="float32",
        batch_size=BATCH,
        weights=encoder.weights_digest(),
        num_workers=1,
        prefetch_videos=4,
    )


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model_config):  # noqa: F811
    return load_encoder(TINY_MODEL, "none", CPU)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, clips) -> bytes:
    """The artifact one process writes (the stage run in this process)."""
    params = visual_params(tmp_path_factory.mktemp("one"), clips)
    visual_features.run(params)
    return Path(params.paths.visual_features).read_bytes()


@pytest.mark.parametrize("count", [2, 3, 5])
def test_merged_parts_are_the_one_process_file_byte_for_byte(tmp_path, clips, tiny_encoder, one_process, count):
    sharded = plan(visual_params(tmp_path, clips), tiny_encoder, count)
    frames = [sum(len(r.frame_indices) for r in shard) for shard in sharded.shards]
    assert sum(frames) == 9 * T and max(frames) - min(frames) <= 3 * T  # within one chunk of balance
    for part in sharded.parts:
        sharded.write_part(part)
    require_parts(sharded.parts, sharded.output)
    assert sharded.merge() == 8
    assert sharded.output.read_bytes() == one_process
    merged = read_visual_features(sharded.output, None)
    assert merged.metadata["skipped_videos"][0]["video_id"] == "garbage"
    assert merged.metadata["feature_checksum"] == file_checksum(sharded.output, ["features"])


def test_a_missing_part_is_refused_naming_its_shard(tmp_path, clips, tiny_encoder):
    sharded = plan(visual_params(tmp_path, clips), tiny_encoder, 2)
    sharded.write_part(sharded.parts[0])  # rank 1 died before writing its part
    with pytest.raises(
        ArtifactError, match=r"rank 1's shard of 2 \(videos 'vid2'\.\.'vid7': 6 videos, 24 frames\)"
    ) as err:
        require_parts(sharded.parts, sharded.output)
    assert "part-00001-of-00002.parquet is missing" in str(err.value) and "rank 0" not in str(err.value)
    assert "recompute the others" in str(err.value)


def test_a_part_from_another_run_is_refused(tmp_path, clips, tiny_encoder):
    params = visual_params(tmp_path, clips)
    sharded = plan(params, tiny_encoder, 2)
    for part in sharded.parts:
        sharded.write_part(part)
    require_parts(plan(params, tiny_encoder, 2).parts, sharded.output)  # the same plan again: valid
    # The same files, but this run stores float16: both parts are stale.
    other = visual_features.ShardedExtraction.plan(
        sharded.requests, tiny_encoder, sharded.output, 2, num_frames=T, dtype="float16", batch_size=BATCH, weights="x"
    )
    with pytest.raises(ArtifactError, match=r"rank 0's shard of 2 .* does not match this run") as err:
        require_parts(other.parts, sharded.output)
    assert "rank 1's shard of 2" in str(err.value)


def test_a_modified_part_is_refused_by_its_checksum(tmp_path, clips, tiny_encoder):
    sharded = plan(visual_params(tmp_path, clips), tiny_encoder, 2)
    for part in sharded.parts:
        sharded.write_part(part)
    path = sharded.parts[1].files[0].path
    table = pq.read_table(path)
    features = table.column("features").combine_chunks()
    flat = np.array(features.flatten().flatten().to_numpy())
    flat[0] += 1.0
    from pipeline.artifacts.parquet import numpy_to_fixed_list

    changed = table.set_column(3, "features", numpy_to_fixed_list(flat.reshape(len(table), T, -1)))
    write_table(changed, path, schemas.visual_features(T, tiny_encoder.dim), read_metadata(path))
    with pytest.raises(ArtifactError, match=r"rank 1's shard of 2 .* do not match the checksum"):
        require_parts(sharded.parts, sharded.output)


def test_every_process_builds_the_same_random_init_weights(tiny_model_config):  # noqa: F811
    torch.manual_seed(123)
    first = load_encoder(TINY_MODEL, "none", CPU).weights_digest()
    torch.manual_seed(456)
    second = load_encoder(TINY_MODEL, "none", CPU).weights_digest()
    assert first == second
    # Control: the digest sees a change of one weight.
    encoder = load_encoder(TINY_MODEL, "none", CPU)
    with torch.no_grad():
        next(encoder.model.visual.parameters()).view(-1)[0] += 1e-3
    assert encoder.weights_digest() != first


# ---------------------------------------------------------------------------------------------
# Text features: parts and merge in this process


@pytest.fixture(scope="module")
def text_encoder():
    return load_text_encoder("minilm", CPU, batch_size=2)


def text_params(tmp_path: Path, nproc: int = 1) -> Params:
    tree = {
        "paths": {
            "qa_table": str(tmp_path / "qa.parquet"),
            "text_features": str(tmp_path / "t"),
        },
        "features": {"device": "cpu", "launch": {"nproc_per_node": nproc}, "text": {"batch_size": 2}},
    }
    params = build(Params, tree)
    write_table(_qa_table(QA_ROWS), params.paths.qa_table, schemas.QA)
    return params


def test_text_parts_merge_into_the_one_process_files(tmp_path, text_encoder):
    one = text_params(tmp_path / "one")
    text_features.run(one)
    params = text_params(tmp_path / "three")
    questions, options = text_features.read_qa_texts(params.paths.qa_table)
    texts = text_features.collect_texts(questions, options)
    sharded = text_features.ShardedText.plan(text_encoder, params.features.text, texts, params.paths.text_features, 3)
    # Whole batches of 2 texts each, balanced: 10 options = 5 batches -> 2 + 1 + 2 batches.
    assert [len(rows["option"]) for rows in sharded.rows] == [4, 2, 4]
    assert [len(rows["question"]) for rows in sharded.rows] == [0, 2, 0]
    for part in reversed(sharded.parts):
        sharded.write_part(part)
    require_parts(sharded.parts, params.paths.text_features)
    sharded.merge()
    for kind in ("question", "option", "qa"):
        mine = Path(params.paths.text_features) / file_name(kind)
        assert mine.read_bytes() == (Path(one.paths.text_features) / file_name(kind)).read_bytes(), kind
    meta = read_metadata(Path(params.paths.text_features) / file_name("qa"))
    assert meta["feature_checksum_columns"] == ["pooled"]
    # Parts made for other settings are refused, naming the shards.
    cfg = dataclasses.replace(params.features.text, dtype="float32")
    stale = text_features.ShardedText.plan(text_encoder, cfg, texts, params.paths.text_features, 3)
    with pytest.raises(ArtifactError, match=r"rank 0's shard of 3 \(0 questions, 4 options, .*does not match") as err:
        require_parts(stale.parts, params.paths.text_features)
    assert "rank 2's shard of 3" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Real processes: the stages under torchrun (2 ranks, gloo)


@pytest.mark.slow
def test_two_processes_write_the_one_process_visual_artifact(tmp_path, clips, capfd):
    one = visual_params(tmp_path / "one", clips, model="ViT-S-32")
    visual_features.run(one)
    two = visual_params(tmp_path / "two", clips, model="ViT-S-32", nproc=2)
    # A previous run of 2 processes where rank 1 died: rank 0's part is on disk, rank 1's is not.
    sharded = plan(two, load_encoder("ViT-S-32", "none", CPU), 2)
    sharded.write_part(sharded.parts[0])
    capfd.readouterr()
    visual_features.run(two)  # re-executes itself under torchrun
    log = capfd.readouterr().err
    assert (
        "[rank 0] cra.shards: rank 0's shard of 2 (videos 'vid0'..'vid1'" in log and "kept from a previous run" in log
    )
    assert "[rank 1] cra.shards: computing rank 1's shard of 2" in log
    assert "computing rank 0's shard" not in log
    assert Path(two.paths.visual_features).read_bytes() == Path(one.paths.visual_features).read_bytes()
    assert not parts_dir(two.paths.visual_features).exists()


@pytest.mark.slow
def test_two_processes_write_the_one_process_text_files(tmp_path):
    one, two = text_params(tmp_path / "one"), text_params(tmp_path / "two", nproc=2)
    text_features.run(one)
    text_features.run(two)
    for kind in ("question", "option", "qa"):
        first = (Path(one.paths.text_features) / file_name(kind)).read_bytes()
        assert (Path(two.paths.text_features) / file_name(kind)).read_bytes() == first, kind
    assert not parts_dir(two.paths.text_features).exists()


@pytest.mark.slow
def test_rank_0_receives_the_parts_it_cannot_see(tmp_path):
    # Per-node outputs: each rank works in its own folder (its "machine's disk"), so rank 0 cannot read
    # rank 1's part until fetch_to_main sends it over the gloo group.
    script = tmp_path / "fetch.py"
    script.write_text(
        "import os, sys\n"
        "from pathlib import Path\n"
        "from pipeline.distributed import fetch_to_main, rank_context\n"
        "with rank_context('cpu') as ctx:\n"
        "    os.chdir(Path(sys.argv[1]) / f'node{ctx.rank}')\n"
        "    files = [[Path('parts/a.bin')], [Path('parts/b.bin'), Path('parts/c.bin')]]\n"
        "    if ctx.rank == 1:\n"
        "        Path('parts').mkdir()\n"
        "        Path('parts/b.bin').write_bytes(bytes(range(256)) * 1000)\n"
        "    fetch_to_main(ctx, files, [1] if ctx.is_main else None)\n"
    )
    for node in ("node0", "node1"):
        (tmp_path / node).mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)]
    done = subprocess.run([*command, str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "node0" / "parts" / "b.bin").read_bytes() == bytes(range(256)) * 1000
    assert not (tmp_path / "node0" / "parts" / "c.bin").exists()  # rank 1 lacks it too: stays missing
