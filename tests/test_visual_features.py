"""The visual_features stage: preprocessing parity with open_clip, the artifact, weights errors, batching.

Tiny real mp4 videos (cv2, mp4v) in tmp_path; a tiny registered open_clip ViT (64 px input, 2
layers) for stage runs, ViT-S-32 (random init) where open_clip's real preprocessing matters.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.artifacts import schemas
from pipeline.artifacts.parquet import ArtifactError, write_table
from pipeline.artifacts.visual_features import expected_visual_metadata, read_visual_features
from pipeline.config import Params, build
from pipeline.data.decode import DecodeFailure, VideoRequest, decode_frames, decode_resolution, iter_decoded
from pipeline.encoders.visual import FramePreprocessor, PreprocessSpec, load_encoder, resolve_weights
from pipeline.errors import PipelineError
from stages import visual_features as stage

TINY_MODEL = "cra-test-tiny-vit"
T = 4
WIDTH, HEIGHT = 96, 72


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session", autouse=True)
def tiny_model_config(tmp_path_factory) -> str:
    """Register a tiny open_clip architecture (a real open_clip CLIP, 64 px input, D=32)."""
    import open_clip

    folder = tmp_path_factory.mktemp("open_clip_configs")
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
    }
    (folder / f"{TINY_MODEL}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    return TINY_MODEL


def make_video(path: Path, num_frames: int, seed: int, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """A small mp4 with a coloured background per video and a moving white box and red disc."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, size=3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for i in range(num_frames):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = (background + 9 * i) % 256
        x = (i * width // max(num_frames, 1)) % (width - width // 4)
        cv2.rectangle(frame, (x, height // 6), (x + width // 4, height // 2), (255, 255, 255), -1)
        cv2.circle(frame, (width - 1 - x, 2 * height // 3), height // 6, (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def manifest_row(video_id: str, path: Path, indices: list[int], frame_count: int, status: str = "ok") -> dict:
    return {
        "video_id": video_id,
        "path": str(path),
        "status": status,
        "error": None if status == "ok" else "bad",
        "frame_count": frame_count,
        "fps": 10.0,
        "duration": frame_count / 10.0,
        "width": WIDTH,
        "height": HEIGHT,
        "frame_indices": indices,
        "timestamps": [i / 10.0 for i in indices],
    }


def write_manifest(path: Path, rows: list[dict]) -> Path:
    write_table(pa.Table.from_pylist(rows, schema=schemas.VIDEO_MANIFEST), path, schemas.VIDEO_MANIFEST)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict:
    """Five ok videos (lengths 9..13, one repeating an index), one missing row, in a manifest."""
    folder = tmp_path_factory.mktemp("videos")
    rows = []
    for k in range(5):
        count = 9 + k
        indices = [0, 3, 3, count - 1] if k == 2 else [0, 2, 5, count - 1]
        rows.append(manifest_row(f"vid{k}", make_video(folder / f"vid{k}.mp4", count, seed=k), indices, count))
    rows.insert(3, manifest_row("absent", folder / "absent.mp4", [], 0, status="missing"))
    rows[3]["frame_indices"] = rows[3]["timestamps"] = None
    return {"folder": folder, "rows": rows, "manifest": write_manifest(folder / "videos.parquet", rows)}


@pytest.fixture
def stage_log():
    """Records logged by the stage (its logger does not propagate to pytest's caplog)."""
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("cra.visual_features")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def make_params(tmp_path: Path, manifest: Path, **visual) -> Params:
    tree = {
        "paths": {"video_manifest": str(manifest), "visual_features": str(tmp_path / "visual.parquet")},
        "decode": {"num_frames": T},
        "features": {
            "device": "cpu",
            "visual": {"model": TINY_MODEL, "pretrained": "none", "batch_size": 6, "num_workers": 0, **visual},
        },
    }
    return build(Params, tree)


def run_stage(tmp_path: Path, manifest: Path, **visual):
    params = make_params(tmp_path, manifest, **visual)
    stage.run(params)
    return params, read_visual_features(params.paths.visual_features, expected_visual_metadata(params))


# ---------------------------------------------------------------------------------------------
# Preprocessing parity with open_clip's PIL transform


def decoded_frames(folder: Path) -> np.ndarray:
    path = make_video(folder / "parity.mp4", 12, seed=7, width=160, height=120)
    request = VideoRequest("parity", str(path), np.array([0, 4, 8, 11]), np.zeros(4))
    return decode_frames(request)  # (4, 120, 160, 3)


@pytest.mark.parametrize(
    "size, resize_mode, interpolation",
    [
        (224, "shortest", "bicubic"),
        ((96, 128), "shortest", "bicubic"),
        (224, "longest", "bicubic"),
        (224, "squash", "bilinear"),
        (64, "shortest", "bilinear"),
    ],
)
def test_preprocessing_matches_open_clip_pil_transform(tmp_path, size, resize_mode, interpolation):
    import open_clip
    from PIL import Image

    frames = decoded_frames(tmp_path)
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    reference_transform = open_clip.image_transform(
        size, is_train=False, mean=mean, std=std, resize_mode=resize_mode, interpolation=interpolation
    )
    reference = torch.stack([reference_transform(Image.fromarray(f)) for f in frames])  # (T, C, S_h, S_w)
    spec = PreprocessSpec.from_open_clip(
        {"size": size, "mean": mean, "std": std, "interpolation": interpolation, "resize_mode": resize_mode}
    )
    uint8 = FramePreprocessor(spec)(frames)
    assert uint8.dtype == torch.uint8 and uint8.shape == reference.shape
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    ours = (uint8.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / std_t
    levels = ((ours - reference) * std_t * 255).abs()  # difference in uint8 levels
    # torchvision's uint8 antialiased kernels follow PIL's fixed-point resampling: equal values but
    # for rare 1-2 level rounding differences at saturated synthetic edges.
    assert levels.max() <= 2.01
    assert (levels > 1.01).float().mean() < 1e-4
    assert (levels > 0.5).float().mean() < 5e-3
    assert (ours - reference).abs().mean() < 1e-3


def test_encoded_features_match_open_clip_preprocess(tmp_path):
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    frames = decoded_frames(tmp_path)
    encoder = load_encoder("ViT-S-32", "none", torch.device("cpu"))
    # The transform open_clip.create_model_and_transforms returns for this model.
    reference_transform = image_transform_v2(PreprocessCfg(**encoder.model.visual.preprocess_cfg), is_train=False)
    reference = torch.stack([reference_transform(Image.fromarray(f)) for f in frames])
    ours = encoder.normalize(encoder.preprocessor(frames))
    assert (ours - reference).abs().max() < 0.031  # <= 2 uint8 levels / min(std)
    with torch.inference_mode():
        features_ours = encoder.encode(encoder.preprocessor(frames))
        features_reference = encoder.encode_normalized(reference)
    cosine = torch.nn.functional.cosine_similarity(features_ours, features_reference)
    assert cosine.min() > 0.999
    # Control: the bound separates different frames (frames 0 and 11 differ a lot).
    apart = torch.nn.functional.cosine_similarity(features_reference[:1], features_reference[-1:])
    assert apart.item() < 0.99


# ---------------------------------------------------------------------------------------------
# The artifact


def test_stage_writes_expected_rows_shapes_and_metadata(tmp_path, videos):
    params, read = run_stage(tmp_path, videos["manifest"])
    ok_rows = [r for r in videos["rows"] if r["status"] == "ok"]
    video_ids, features, timestamps, metadata = read
    assert video_ids == [r["video_id"] for r in ok_rows]
    assert features.shape == (5, T, 32) and features.dtype == np.float32
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(timestamps, np.array([r["timestamps"] for r in ok_rows]))
    table = pq.read_table(params.paths.visual_features)
    assert table.column("frame_indices").to_pylist() == [r["frame_indices"] for r in ok_rows]
    # vid2 samples frame 3 twice: both slots hold the same frame, hence the same features up to rounding
    # (the two copies sit at different batch positions, and batched matmuls are not bit-identical across
    # positions on every CPU, e.g. with AVX-512 kernels).
    np.testing.assert_allclose(features[2, 1], features[2, 2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(features[0, 0], features[0, 3])
    assert metadata["model"] == TINY_MODEL and metadata["pretrained"] == "none" and metadata["random_init"] is True
    assert metadata["num_frames"] == T and metadata["dim"] == 32 and metadata["dtype"] == "float32"
    assert metadata["normalized"] is False and metadata["skipped_videos"] == [] and metadata["videos"] == 5
    assert metadata["open_clip_version"] == __import__("open_clip").__version__
    preprocessing = metadata["preprocessing"]
    assert preprocessing["image_size"] == [64, 64] and preprocessing["interpolation"] == "bicubic"
    assert preprocessing["resize_mode"] == "shortest" and preprocessing["mean"][0] == pytest.approx(0.48145466)


def test_reader_is_zero_copy_and_looks_up_rows(tmp_path, videos, monkeypatch):
    import pipeline.artifacts.visual_features as visual_artifact

    params, _ = run_stage(tmp_path, videos["manifest"])
    tables = []
    original_read_table = visual_artifact.read_table

    def capture(*args, **kwargs):
        tables.append(original_read_table(*args, **kwargs))
        return tables[-1]

    monkeypatch.setattr(visual_artifact, "read_table", capture)
    read = read_visual_features(params.paths.visual_features, expected_visual_metadata(params))
    column = tables[0].column("features")
    assert column.num_chunks == 1  # one row group
    values = column.chunk(0).values.values.buffers()[1]  # the float32 buffer under (N, T, D)
    assert read.features.ctypes.data == values.address
    assert np.shares_memory(read.features, np.frombuffer(values, dtype=np.float32))
    assert not read.features.flags.writeable
    np.testing.assert_array_equal(read.select(["vid4", "vid0"]), read.features[[4, 0]])
    assert read.rows(["vid1"]).tolist() == [1]
    with pytest.raises(ArtifactError, match="absent"):
        read.rows(["absent"])


def test_metadata_mismatch_is_refused(tmp_path, videos):
    params, _ = run_stage(tmp_path, videos["manifest"])
    path = params.paths.visual_features
    for key, value in [("model", "ViT-L-14"), ("pretrained", "openai"), ("num_frames", 32)]:
        expected = {**expected_visual_metadata(params), key: value}
        with pytest.raises(ArtifactError, match=f"{key}: artifact has"):
            read_visual_features(path, expected)
    other = make_params(tmp_path, videos["manifest"], pretrained=str(tmp_path / "elsewhere" / "ckpt.pt"))
    with pytest.raises(ArtifactError, match="pretrained_param"):
        read_visual_features(path, expected_visual_metadata(other))


def test_float16_storage(tmp_path, videos):
    _, full = run_stage(tmp_path / "f32", videos["manifest"])
    _, half = run_stage(tmp_path / "f16", videos["manifest"], dtype="float16")
    assert half.features.dtype == np.float16 and half.metadata["dtype"] == "float16"
    np.testing.assert_allclose(half.features.astype(np.float32), full.features, rtol=2e-3, atol=2e-3)


def test_corrupt_video_is_skipped_and_recorded(tmp_path, videos, stage_log):
    rows = [dict(r) for r in videos["rows"]]
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    rows.insert(1, manifest_row("garbage", garbage, [0, 1, 2, 3], 10))
    rows.append(manifest_row("too_short", videos["folder"] / "vid0.mp4", [0, 1, 2, 40], 41))  # vid0 has 9 frames
    _, read = run_stage(tmp_path, write_manifest(tmp_path / "videos.parquet", rows))
    assert read.video_ids == ["vid0", "vid1", "vid2", "vid3", "vid4"]
    skipped = {s["video_id"]: s["reason"] for s in read.metadata["skipped_videos"]}
    assert set(skipped) == {"garbage", "too_short"}
    # FFmpeg's own reason, not decord's "RuntimeError: Error reading ..."
    assert skipped["garbage"] == "moov atom not found; Invalid data found when processing input"
    assert "frame index 40 is beyond the 9 frames" in skipped["too_short"]
    # The late metadata is what every reader of the schema sees, not only the footer.
    assert json.loads(pq.read_schema(tmp_path / "visual.parquet").metadata[b"cra"])["skipped_videos"]
    with pytest.raises(ArtifactError, match="failed to decode"):
        read.rows(["garbage"])
    log = "\n".join(record.getMessage() for record in stage_log)
    assert f"skipping video garbage ({garbage})" in log and "SKIPPED 2 that failed to decode" in log


def test_decord_error_is_a_decode_failure_not_a_crash(tmp_path, monkeypatch):
    import decord
    from decord._ffi.base import DECORDError

    assert not issubclass(DECORDError, RuntimeError)  # why decode catches it by name

    class BrokenReader:
        def __init__(self, *args, **kwargs):
            raise DECORDError("[11:02:03] src/video/video_reader.cc:151: Error   decoding\n frame 7")

    monkeypatch.setattr(decord, "VideoReader", BrokenReader)
    request = VideoRequest("broken", str(tmp_path / "broken.mp4"), np.arange(T), np.zeros(T))
    (failure,) = list(iter_decoded([request], lambda frames: frames, num_workers=0))
    assert isinstance(failure, DecodeFailure) and failure.request is request
    assert failure.reason == "DECORDError: [11:02:03] src/video/video_reader.cc:151: Error decoding frame 7"


def test_stage_refuses_a_manifest_with_another_num_frames(tmp_path, videos):
    params = make_params(tmp_path, videos["manifest"])
    params = build(Params, {**_tree(params), "decode": {"num_frames": 6}})
    with pytest.raises(PipelineError, match=r"row 0 \(video 'vid0'\): 4 frame_indices .* decode.num_frames is 6"):
        stage.run(params)


def _tree(params: Params) -> dict:
    from pipeline.config import to_dict

    tree = to_dict(params)
    return {k: tree[k] for k in ("paths", "decode", "features")}


def test_all_videos_failing_is_an_error_and_writes_nothing(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 50)
    manifest = write_manifest(tmp_path / "videos.parquet", [manifest_row("garbage", garbage, [0, 1, 2, 3], 10)])
    params = make_params(tmp_path, manifest)
    with pytest.raises(PipelineError, match="none of the 1 videos could be decoded"):
        stage.run(params)
    assert not Path(params.paths.visual_features).exists()
    assert not list(tmp_path.glob(".visual.parquet.tmp-*"))


# ---------------------------------------------------------------------------------------------
# Determinism and batching


def test_two_runs_give_identical_features(tmp_path, videos):
    _, first = run_stage(tmp_path / "a", videos["manifest"])
    _, second = run_stage(tmp_path / "b", videos["manifest"], num_workers=1)
    # Same frames in the same encoder batches (decode workers change who decodes, not the batches):
    # bit-identical is what the stage promises here.
    np.testing.assert_array_equal(first.features, second.features)


@pytest.mark.parametrize("batch_size", [3, 7, 64])
def test_batches_spanning_videos_match_one_video_at_a_time(tmp_path, videos, batch_size):
    _, per_video = run_stage(tmp_path / "one", videos["manifest"], batch_size=T)  # each batch = one video
    _, spanning = run_stage(tmp_path / "span", videos["manifest"], batch_size=batch_size, num_workers=1)
    assert spanning.video_ids == per_video.video_ids
    np.testing.assert_allclose(spanning.features, per_video.features, rtol=1e-5, atol=1e-5)


def test_frame_batcher_packs_frames_across_videos_in_order():
    calls = []

    def encode(batch: torch.Tensor) -> torch.Tensor:  # (B, 1) -> (B, 2): [value, 10 * value]
        calls.append(batch[:, 0].tolist())
        return torch.cat([batch, 10 * batch], dim=1).float()

    batcher = stage.FrameBatcher(batch_size=5, dim=2, encode=encode)
    done = []
    for key, values in [("a", [1, 2, 3]), ("b", [4, 5, 6, 7, 8, 9, 10]), ("c", [11])]:
        done += batcher.add(key, torch.tensor(values).view(-1, 1))
    assert [key for key, _ in done] == ["a", "b"]  # c waits for its batch
    done += batcher.finish()
    assert calls == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11]]
    assert [key for key, _ in done] == ["a", "b", "c"]
    np.testing.assert_array_equal(done[1][1], [[v, 10 * v] for v in range(4, 11)])
    assert batcher.frames_encoded == 11 and batcher.finish() == []


def test_prefetching_loader_yields_in_order_with_failures(tmp_path, videos):
    requests = stage.load_video_requests(videos["manifest"], T)
    requests.insert(2, VideoRequest("nope", str(tmp_path / "nope.mp4"), np.arange(T), np.zeros(T)))
    items = list(iter_decoded(requests, lambda frames: torch.from_numpy(frames), num_workers=2, prefetch_videos=2))
    assert [item.request.video_id for item in items] == [r.video_id for r in requests]
    assert isinstance(items[2], DecodeFailure) and items[2].reason == "No such file or directory"
    assert items[0].frames.shape == (T, HEIGHT, WIDTH, 3)


class _CrashOn:
    """A transform that kills its worker process on one video (as a decoder segfault would)."""

    def __init__(self, height: int):
        self.height = height

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        if frames.shape[1] == self.height:
            os._exit(1)
        return torch.from_numpy(frames)


def test_a_dying_decode_worker_names_the_video(tmp_path, videos):
    requests = stage.load_video_requests(videos["manifest"], T)
    big = make_video(tmp_path / "crash.mp4", 6, seed=9, width=64, height=48)
    requests.insert(2, VideoRequest("crasher", str(big), np.arange(T), np.zeros(T)))
    received = []
    with pytest.raises(PipelineError, match=r"decode worker died .* video 'crasher' .* after 2 of 6 videos"):
        for item in iter_decoded(requests, _CrashOn(height=48), num_workers=1, prefetch_videos=1):
            received.append(item.request.video_id)
    assert received == ["vid0", "vid1"]


# ---------------------------------------------------------------------------------------------
# Decode-time resize


def test_decode_resolution_keeps_aspect_and_only_downscales():
    assert decode_resolution(1920, 1080, 448) == (796, 448)
    assert decode_resolution(480, 640, 448) == (448, 598)
    assert decode_resolution(640, 448, 448) is None
    assert decode_resolution(None, 480, 448) is None


def test_decode_resize_keeps_features_close(tmp_path, tiny_model_config):
    path = make_video(tmp_path / "large.mp4", 6, seed=3, width=320, height=240)
    request = VideoRequest("large", str(path), np.array([0, 2, 4, 5]), np.zeros(4), 320, 240)
    encoder = load_encoder(TINY_MODEL, "none", torch.device("cpu"))
    full = encoder.encode(encoder.preprocessor(decode_frames(request)))
    size = decode_resolution(320, 240, 2 * 64)
    assert size == (170, 128)
    small_frames = decode_frames(request, size=size)
    assert small_frames.shape == (4, 128, 170, 3)
    reduced = encoder.encode(encoder.preprocessor(small_frames))
    assert torch.nn.functional.cosine_similarity(full, reduced).min() > 0.99
    # The loader asks for the reduced size from the manifest's width and height.
    (item,) = list(iter_decoded([request], lambda frames: frames, num_workers=0, max_short_side=128))
    np.testing.assert_array_equal(item.frames, small_frames)


# ---------------------------------------------------------------------------------------------
# Weights


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if anything tries to download (the 46 s hub-retry trap)."""
    import huggingface_hub
    import open_clip.pretrained

    def forbidden(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", forbidden)
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", forbidden)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", forbidden)


def test_unknown_tag_is_refused(no_download):
    with pytest.raises(PipelineError) as err:
        resolve_weights("ViT-S-32", "laion2b_s34b_b79k")
    message = str(err.value)
    assert "features.visual.pretrained = 'laion2b_s34b_b79k'" in message
    assert "open_clip has no pretrained tag for it" in message
    assert "set features.visual.pretrained to its path" in message


def test_unknown_tag_lists_the_models_tags(no_download):
    with pytest.raises(PipelineError, match="its tags: .*openai"):
        resolve_weights("ViT-B-32", "not_a_tag")


def test_missing_checkpoint_path_is_refused(tmp_path, no_download):
    missing = tmp_path / "weights" / "clip.pt"
    with pytest.raises(PipelineError, match=r"features.visual.pretrained = '.*clip.pt': checkpoint file not found"):
        resolve_weights("ViT-S-32", str(missing))
    with pytest.raises(PipelineError, match="is a folder"):
        resolve_weights("ViT-S-32", str(tmp_path))


def test_valid_tag_without_cached_weights_fails_fast(tmp_path, monkeypatch, no_download):
    import pipeline.encoders.visual as visual_encoders

    monkeypatch.setattr(visual_encoders, "OPEN_CLIP_URL_CACHE", tmp_path / "clip")
    with pytest.raises(PipelineError) as err:
        resolve_weights("ViT-B-32", "openai", cache_dir=tmp_path / "hub")
    message = str(err.value)
    assert "features.visual.pretrained = 'openai'" in message
    assert "ViT-B-32/openai (timm/vit_base_patch32_clip_224.openai/) are not in the local cache" in message
    assert "open_clip.create_model('ViT-B-32', pretrained='openai')" in message
    assert "set features.visual.pretrained to its path" in message


def test_valid_tag_resolves_from_the_local_hf_cache(tmp_path, no_download):
    repo = tmp_path / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    weights = resolve_weights("ViT-B-32", "openai", cache_dir=tmp_path / "hub")
    assert weights.kind == "tag" and weights.record == "openai"
    assert Path(weights.checkpoint) == snapshot / "open_clip_model.safetensors"
    assert weights.tag_config["quick_gelu"] is True  # loaded with the tag's activation, as open_clip would


def test_unknown_architecture_is_refused():
    with pytest.raises(PipelineError, match=r"features.visual.model = 'ViT-S-33' is not .* Did you mean .*ViT-S-32"):
        resolve_weights("ViT-S-33", "none")


def test_checkpoint_file_round_trip(tmp_path, videos):
    encoder = load_encoder(TINY_MODEL, "none", torch.device("cpu"))
    checkpoint = tmp_path / "tiny.pt"
    torch.save(encoder.model.state_dict(), checkpoint)
    with torch.random.fork_rng():
        torch.manual_seed(123)  # a loaded checkpoint must not depend on the init seed
        loaded = load_encoder(TINY_MODEL, str(checkpoint), torch.device("cpu"))
    frames = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    torch.testing.assert_close(loaded.encode(frames), encoder.encode(frames), rtol=0, atol=0)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert loaded.weights.record == f"sha256:{digest}"
    params, read = run_stage(tmp_path, videos["manifest"], pretrained=str(checkpoint))
    assert read.metadata["pretrained"] == f"sha256:{digest}" and read.metadata["random_init"] is False
    assert expected_visual_metadata(params)["pretrained"] == f"sha256:{digest}"


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    encoder = load_encoder(TINY_MODEL, "none", torch.device("cpu"))
    checkpoint = tmp_path / "tiny.pt"
    torch.save(encoder.model.state_dict(), checkpoint)
    with pytest.raises(PipelineError, match=r"could not load .*tiny.pt into ViT-S-32"):
        load_encoder("ViT-S-32", str(checkpoint), torch.device("cpu"))
