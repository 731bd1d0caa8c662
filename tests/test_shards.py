"""Shard writing/reading (videos and latents layouts) and the train/val split."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from video_fixtures import leftovers

from fovea.data.shards import (
    iter_latent_samples,
    iter_video_samples,
    latent_sample_files,
    latents_eval_dataset,
    list_shards,
    video_sample_files,
    write_shards,
)
from fovea.data.split import split_of

NUM_FRAMES = 4
SIZE = 32
VAL_FRACTION = 0.5


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- shards


def test_videos_shard_round_trip(tmp_path: Path) -> None:
    samples = {f"clip-{i:03d}": (bytes([i]) * (10 + i), f"caption {i}", {"index": i}) for i in range(5)}
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
    assert leftovers(tmp_path) == []


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

    loader = torch.utils.data.DataLoader(latents_eval_dataset(tmp_path / "val"), batch_size=2, num_workers=0)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [2, 1]
    batch_frames, batch_latents = batches[0]
    assert batch_frames.dtype == torch.uint8 and tuple(batch_frames.shape) == (2, 8, 16, 16, 3)
    assert batch_latents.dtype == torch.float32 and tuple(batch_latents.shape) == (2, 8, 4, 2, 2)
    np.testing.assert_array_equal(batch_latents.numpy(), latents[:2].astype(np.float32))

    # With keys, each batch carries its clips' keys in order: nothing rereads the shards for them.
    keyed = list(torch.utils.data.DataLoader(latents_eval_dataset(tmp_path / "val", keys=True), batch_size=2))
    assert [list(keys) for keys, _, _ in keyed] == [["k0", "k1"], ["k2"]]
    np.testing.assert_array_equal(keyed[0][1].numpy(), batch_frames.numpy())
    np.testing.assert_array_equal(keyed[1][2].numpy(), latents[2:].astype(np.float32))


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
    assert leftovers(tmp_path) == []

    with write_shards(out, max_per_shard=5) as sink:  # a successful rewrite replaces everything
        sink.write("new", video_sample_files(b"new", "new", {}))
    assert [s.key for s in iter_video_samples(out)] == ["new"]
    assert leftovers(tmp_path) == []


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


def test_the_split_module_imports_no_heavy_library() -> None:
    # fovea.data re-exports nothing, so the split (used by light tools) pulls in no torch or PyAV.
    code = "import sys, fovea.data.split; print(sorted({'torch', 'av', 'webdataset'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
