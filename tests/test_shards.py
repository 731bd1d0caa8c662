"""Shard writing/reading, the train/val split, the videos stage and the latents cache."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fovea.data import latents as latents_module
from fovea.data.latents import LatentCacheError, cache_latents, iter_training_frames
from fovea.data.shards import (
    iter_latent_samples,
    iter_video_samples,
    latent_sample_files,
    latents_eval_dataset,
    latents_train_dataset,
    list_shards,
    video_sample_files,
    write_shards,
)
from fovea.data.split import split_of
from fovea.data.control import make_control_clip
from fovea.data.synthetic import make_clip
from fovea.data.video import encode_mp4
from fovea.data.videos import write_synthetic_videos
from fovea.params import DataParams

NUM_FRAMES = 4
SIZE = 32
VAL_FRACTION = 0.5


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def fake_encode(frames: np.ndarray) -> np.ndarray:
    """Stands in for the VAE: 4x4 average pooling, [N, H, W, 3] uint8 -> [N, 3, H/4, W/4]."""
    n, h, w, _ = frames.shape
    scaled = frames.astype(np.float32) / 127.5 - 1.0
    return scaled.reshape(n, h // 4, 4, w // 4, 4, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------- shards


def test_videos_shard_round_trip(tmp_path: Path) -> None:
    samples = {
        f"clip-{i:03d}": (bytes([i]) * (10 + i), f"caption {i}", {"index": i}) for i in range(5)
    }
    with write_shards(tmp_path / "videos", max_per_shard=2) as sink:
        for key, (mp4, caption, metadata) in samples.items():
            sink.write(key, video_sample_files(mp4, caption, metadata))
    assert [p.name for p in list_shards(tmp_path / "videos")] == [
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
    ]
    read = list(iter_video_samples(tmp_path / "videos"))
    assert [s.key for s in read] == list(samples)
    for sample in read:
        mp4, caption, metadata = samples[sample.key]
        assert (sample.mp4, sample.caption, sample.metadata) == (mp4, caption, metadata)
    assert _leftovers(tmp_path) == []


def test_shard_members_are_plain_ustar_with_a_fixed_mtime(tmp_path: Path) -> None:
    # A pax header before each member doubles the parsing on every read; a fixed mtime keeps
    # shards byte-identical across reruns, so DVC sees unchanged outputs.
    for attempt in ("first", "second"):
        with write_shards(tmp_path / attempt, max_per_shard=4) as sink:
            for i in range(3):
                sink.write(f"clip-{i}", video_sample_files(bytes([i]) * 5, f"caption {i}", {"index": i}))
    (shard,) = list_shards(tmp_path / "first")
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    assert len(members) == 9
    assert all(member.pax_headers == {} and member.mtime == 0 for member in members)
    assert shard.read_bytes() == (tmp_path / "second" / shard.name).read_bytes()


def test_latents_shard_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 8, 16, 16, 3), dtype=np.uint8)
    latents = rng.standard_normal((3, 8, 4, 2, 2)).astype(np.float16)
    with write_shards(tmp_path / "val", max_per_shard=2) as sink:
        for i in range(3):
            sink.write(f"k{i}", latent_sample_files(frames[i], latents[i], f"c{i}", {"i": i}))
    read = list(iter_latent_samples(tmp_path / "val"))
    assert [s.key for s in read] == ["k0", "k1", "k2"]
    for i, sample in enumerate(read):
        assert sample.frames.dtype == np.uint8 and sample.latents.dtype == np.float16
        np.testing.assert_array_equal(sample.frames, frames[i])
        np.testing.assert_array_equal(sample.latents, latents[i])
        assert (sample.caption, sample.metadata) == (f"c{i}", {"i": i})

    loader = torch.utils.data.DataLoader(
        latents_eval_dataset(tmp_path / "val"), batch_size=2, num_workers=0
    )
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [2, 1]
    batch_frames, batch_latents = batches[0]
    assert batch_frames.dtype == torch.uint8 and tuple(batch_frames.shape) == (2, 8, 16, 16, 3)
    assert batch_latents.dtype == torch.float32 and tuple(batch_latents.shape) == (2, 8, 4, 2, 2)
    np.testing.assert_array_equal(batch_latents.numpy(), latents[:2].astype(np.float32))


def test_latent_files_reject_wrong_dtypes() -> None:
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="float16"):
        latent_sample_files(frames, np.zeros((2, 1, 2, 2), dtype=np.float32), "", {})
    with pytest.raises(ValueError, match="steps"):
        latent_sample_files(frames, np.zeros((3, 1, 2, 2), dtype=np.float16), "", {})


def test_failed_write_leaves_previous_output_intact(tmp_path: Path) -> None:
    out = tmp_path / "videos"
    with write_shards(out, max_per_shard=1) as sink:
        sink.write("old", video_sample_files(b"old", "old", {}))
    before = _snapshot(out)

    with pytest.raises(RuntimeError, match="boom"):
        with write_shards(out, max_per_shard=1) as sink:
            sink.write("new-1", video_sample_files(b"new", "new", {}))
            sink.write("new-2", video_sample_files(b"new", "new", {}))
            raise RuntimeError("boom")
    assert _snapshot(out) == before
    assert _leftovers(tmp_path) == []

    with write_shards(out, max_per_shard=5) as sink:  # a successful rewrite replaces everything
        sink.write("new", video_sample_files(b"new", "new", {}))
    assert [s.key for s in iter_video_samples(out)] == ["new"]
    assert _leftovers(tmp_path) == []


def test_keys_that_would_confuse_webdataset_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid sample key"):
        with write_shards(tmp_path / "x", max_per_shard=1) as sink:
            sink.write("clip.1", video_sample_files(b"", "", {}))
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- split


def test_split_is_stable_and_honours_the_fraction() -> None:
    # Pinned values: the split must never change between versions, machines or processes.
    pinned = ["val", "train", "train", "train", "train", "train", "train", "val"]
    assert [split_of(f"synth-{i:06d}", 0.25) for i in range(8)] == pinned
    keys = [f"video-{i}" for i in range(4000)]
    for fraction in (0.1, 0.25, 0.5):
        share = sum(split_of(key, fraction) == "val" for key in keys) / len(keys)
        assert abs(share - fraction) < 0.03
    assert all(split_of(key, 0.0) == "train" for key in keys[:50])
    assert all(split_of(key, 1.0) == "val" for key in keys[:50])
    # A key in val at a small fraction stays in val at a larger one (nested splits).
    assert all(split_of(k, 0.5) == "val" for k in keys if split_of(k, 0.1) == "val")


# --------------------------------------------------------------------------- stages


@pytest.fixture(scope="module")
def videos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of 8 good clips plus a corrupt one, a too-short one and one without an mp4."""
    out = tmp_path_factory.mktemp("data") / "videos"
    with write_shards(out, max_per_shard=4) as sink:
        for index in range(8):
            clip = make_clip(seed=0, index=index, num_frames=6, size=SIZE, sprites=2)
            meta = {"index": index}
            sink.write(
                f"good-{index}", video_sample_files(encode_mp4(clip.frames, 8), clip.caption, meta)
            )
        good = encode_mp4(make_clip(0, 99, 6, SIZE, 2).frames, 8)
        sink.write("broken", video_sample_files(good[: len(good) // 2], "broken", {}))
        short = encode_mp4(make_clip(0, 98, NUM_FRAMES - 1, SIZE, 2).frames, 8)
        sink.write("short", video_sample_files(short, "short", {}))
        sink.write("nomp4", {"txt": b"no video here", "json": b"{}"})
    return out


def test_write_synthetic_videos(tmp_path: Path) -> None:
    params = DataParams(task="sprites", num_clips=5, frames_per_clip=4, size=32, clips_per_shard=2, sprites=2)
    summary = write_synthetic_videos(params, seed=3, out_dir=tmp_path / "videos")
    assert summary["clips"] == 5 and summary["shards"] == 3
    samples = list(iter_video_samples(tmp_path / "videos"))
    assert [s.key for s in samples] == [f"synth-{i:06d}" for i in range(5)]
    sample = samples[2]
    expected = make_clip(3, 2, 4, 32, 2)
    assert sample.caption == expected.caption
    for field, value in {
        "source": "synthetic",
        "index": 2,
        "fps": 8,
        "size": 32,
        "num_frames": 4,
    }.items():
        assert sample.metadata[field] == value
    assert len(sample.metadata["sprites"]) == 2


def test_write_control_videos_keeps_the_target_track(tmp_path: Path) -> None:
    params = DataParams(task="control", num_clips=3, frames_per_clip=6, size=32, distractors=5)
    write_synthetic_videos(params, seed=4, out_dir=tmp_path / "videos")
    sample = list(iter_video_samples(tmp_path / "videos"))[1]
    expected = make_control_clip(4, 1, 6, 32, 5)
    assert sample.caption == expected.caption
    assert sample.metadata["target"] == expected.metadata["target"]
    assert len(sample.metadata["distractors"]) == 5 and len(sample.metadata["target"]["cells"]) == 6


def test_cache_latents_counts_kept_and_skipped(videos_dir: Path, tmp_path: Path) -> None:
    good_keys = [f"good-{i}" for i in range(8)]
    expected_splits = {key: split_of(key, VAL_FRACTION) for key in good_keys}
    assert set(expected_splits.values()) == {"train", "val"}, "fixture must fill both splits"

    out = tmp_path / "latents"
    manifest = cache_latents(
        videos_dir,
        out,
        fake_encode,
        NUM_FRAMES,
        SIZE,
        VAL_FRACTION,
        clips_per_shard=2,
        batch_size=3,
    )
    assert manifest == json.loads((out / "manifest.json").read_text())
    n_val = sum(split == "val" for split in expected_splits.values())
    assert manifest["seen"] == 11
    assert manifest["kept"] == {"train": 8 - n_val, "val": n_val, "total": 8}
    assert manifest["skipped"] == {"missing_video": 1, "too_short": 1, "corrupt": 1}
    assert {(e["key"], e["reason"]) for e in manifest["skipped_examples"]} == {
        ("broken", "corrupt"),
        ("short", "too_short"),
        ("nomp4", "missing_video"),
    }
    assert manifest["frames_shape"] == [NUM_FRAMES, SIZE, SIZE, 3]
    assert manifest["latents_shape"] == [NUM_FRAMES, 3, SIZE // 4, SIZE // 4]

    for split in ("train", "val"):
        for sample in iter_latent_samples(out / split):
            assert expected_splits[sample.key] == split == sample.metadata["split"]
            assert sample.frames.shape == (NUM_FRAMES, SIZE, SIZE, 3)
            assert sample.latents.dtype == np.float16
            np.testing.assert_allclose(
                sample.latents.astype(np.float32), fake_encode(sample.frames), atol=2e-3
            )
            assert sample.metadata["frame_indices"] == [1, 2, 3, 4]  # 4 of 6 frames at stride 1, centred
    assert _leftovers(tmp_path) == []


def test_cache_latents_with_nothing_usable_fails_and_keeps_old_output(tmp_path: Path) -> None:
    out = tmp_path / "latents"
    out.mkdir()
    (out / "manifest.json").write_text("previous")
    videos = tmp_path / "videos"
    with write_shards(videos, max_per_shard=4) as sink:
        sink.write("junk", video_sample_files(b"not a video", "", {}))
        sink.write("nomp4", {"txt": b""})
    with pytest.raises(LatentCacheError, match="no usable clips") as raised:
        cache_latents(videos, out, fake_encode, NUM_FRAMES, SIZE, VAL_FRACTION, clips_per_shard=2)
    assert "missing_video: 1" in str(raised.value) and "corrupt: 1" in str(raised.value)
    assert (out / "manifest.json").read_text() == "previous"
    assert _leftovers(tmp_path) == []


def test_cache_latents_with_an_empty_split_fails(videos_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(LatentCacheError, match="val is empty"):
        cache_latents(
            videos_dir,
            tmp_path / "latents",
            fake_encode,
            NUM_FRAMES,
            SIZE,
            1e-12,
            clips_per_shard=2,
        )
    assert not (tmp_path / "latents").exists()


def test_cache_latents_surfaces_a_writer_error_and_keeps_old_output(
    videos_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shards are written on a background thread: its failure must stop the run, not vanish.
    out = tmp_path / "latents"
    out.mkdir()
    (out / "manifest.json").write_text("previous")

    def failing_files(*args: Any, **kwargs: Any) -> dict[str, bytes]:
        raise OSError("disk full")

    monkeypatch.setattr(latents_module, "latent_sample_files", failing_files)
    with pytest.raises(OSError, match="disk full"):
        cache_latents(videos_dir, out, fake_encode, NUM_FRAMES, SIZE, VAL_FRACTION, clips_per_shard=2, batch_size=2)
    assert (out / "manifest.json").read_text() == "previous"
    assert _leftovers(tmp_path) == []


def test_training_frames_come_from_train_clips_only(videos_dir: Path) -> None:
    n_train = sum(split_of(f"good-{i}", VAL_FRACTION) == "train" for i in range(8))
    frames = iter_training_frames(videos_dir, NUM_FRAMES, SIZE, VAL_FRACTION)
    assert frames.shape == (n_train * NUM_FRAMES, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert len(iter_training_frames(videos_dir, NUM_FRAMES, SIZE, VAL_FRACTION, limit=5)) == 5


def _first_latents(dataset: Any, count: int) -> list[np.ndarray]:
    stream = iter(dataset)
    return [next(stream)[1].numpy() for _ in range(count)]


def test_training_stream_is_endless_and_deterministic(videos_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "latents"
    manifest = cache_latents(
        videos_dir, out, fake_encode, NUM_FRAMES, SIZE, VAL_FRACTION, clips_per_shard=2
    )
    n_train = manifest["kept"]["train"]
    count = 3 * n_train  # several epochs: the stream must not end

    first = _first_latents(latents_train_dataset(out / "train", seed=5, shuffle_buffer=4), count)
    again = _first_latents(latents_train_dataset(out / "train", seed=5, shuffle_buffer=4), count)
    other = _first_latents(latents_train_dataset(out / "train", seed=6, shuffle_buffer=4), count)
    assert len(first) == count
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))

    loader = torch.utils.data.DataLoader(
        latents_train_dataset(out / "train", seed=5, shuffle_buffer=4), batch_size=2, num_workers=0
    )
    frames, latents = next(iter(loader))
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == (2, NUM_FRAMES, SIZE, SIZE, 3)
    assert latents.dtype == torch.float32 and tuple(latents.shape) == (
        2,
        NUM_FRAMES,
        3,
        SIZE // 4,
        SIZE // 4,
    )
    np.testing.assert_array_equal(latents.numpy(), np.stack(first[:2]))
