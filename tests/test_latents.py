"""The latents stage's library side: sampling every clip, caching VAE latents per split, the
manifest, what is skipped and why, and the training stream read back from the cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sample_clips import Clip, clips, expected_indices, frame_index, mean_pool_encoder  # noqa: F401 - a fixture
from video_fixtures import fake_encode, faststart_mp4, leftovers

from fovea.data import latents as latents_module
from fovea.data.encode import encode_mp4
from fovea.data.latents import LatentCacheError, LatentSettings, cache_latents, iter_training_frames
from fovea.data.shards import (
    iter_latent_samples,
    latents_train_dataset,
    video_sample_files,
    write_shards,
)
from fovea.data.split import split_of
from fovea.data.synthetic import make_clip

NUM_FRAMES = 4
SIZE = 32
VAL_FRACTION = 0.5


def settings(**changes: Any) -> LatentSettings:
    return LatentSettings(
        **{"num_frames": NUM_FRAMES, "size": SIZE, "val_fraction": VAL_FRACTION, "clips_per_shard": 2, **changes}
    )


@pytest.fixture(scope="module")
def videos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of 8 good clips plus a corrupt one, a too-short one and one without an mp4."""
    out = tmp_path_factory.mktemp("data") / "videos"
    with write_shards(out, max_per_shard=4) as sink:
        for index in range(8):
            clip = make_clip(seed=0, index=index, num_frames=6, size=SIZE, sprites=2)
            meta = {"index": index}
            sink.write(f"good-{index}", video_sample_files(encode_mp4(clip.frames, 8), clip.caption, meta))
        good = encode_mp4(make_clip(0, 99, 6, SIZE, 2).frames, 8)
        sink.write("broken", video_sample_files(good[: len(good) // 2], "broken", {}))
        short = encode_mp4(make_clip(0, 98, NUM_FRAMES - 1, SIZE, 2).frames, 8)
        sink.write("short", video_sample_files(short, "short", {}))
        sink.write("nomp4", {"txt": b"no video here", "json": b"{}"})
    return out


def test_cache_latents_counts_kept_and_skipped(videos_dir: Path, tmp_path: Path) -> None:
    good_keys = [f"good-{i}" for i in range(8)]
    expected_splits = {key: split_of(key, VAL_FRACTION) for key in good_keys}
    assert set(expected_splits.values()) == {"train", "val"}, "fixture must fill both splits"

    out = tmp_path / "latents"
    manifest = cache_latents(videos_dir=videos_dir, out_dir=out, encode=fake_encode, settings=settings(batch_size=3))
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
            np.testing.assert_allclose(sample.latents.astype(np.float32), fake_encode(sample.frames), atol=2e-3)
            assert sample.metadata["frame_indices"] == [1, 2, 3, 4]  # 4 of 6 frames at stride 1, centred
    assert leftovers(tmp_path) == []


def test_cache_latents_with_nothing_usable_fails_and_keeps_old_output(tmp_path: Path) -> None:
    out = tmp_path / "latents"
    out.mkdir()
    (out / "manifest.json").write_text("previous")
    videos = tmp_path / "videos"
    with write_shards(videos, max_per_shard=4) as sink:
        sink.write("junk", video_sample_files(b"not a video", "", {}))
        sink.write("nomp4", {"txt": b""})
    with pytest.raises(LatentCacheError, match="no usable clips") as raised:
        cache_latents(videos_dir=videos, out_dir=out, encode=fake_encode, settings=settings())
    assert "missing_video: 1" in str(raised.value) and "corrupt: 1" in str(raised.value)
    assert (out / "manifest.json").read_text() == "previous"
    assert leftovers(tmp_path) == []


def test_cache_latents_with_an_empty_split_fails(videos_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(LatentCacheError, match="val is empty"):
        cache_latents(
            videos_dir=videos_dir,
            out_dir=tmp_path / "latents",
            encode=fake_encode,
            settings=settings(val_fraction=1e-12),
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
        cache_latents(videos_dir=videos_dir, out_dir=out, encode=fake_encode, settings=settings(batch_size=2))
    assert (out / "manifest.json").read_text() == "previous"
    assert leftovers(tmp_path) == []


def test_training_frames_come_from_train_clips_only(videos_dir: Path) -> None:
    n_train = sum(split_of(f"good-{i}", VAL_FRACTION) == "train" for i in range(8))
    frames = iter_training_frames(videos_dir, settings=settings())
    assert frames.shape == (n_train * NUM_FRAMES, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert len(iter_training_frames(videos_dir, settings=settings(), limit=5)) == 5


def _first_latents(dataset: Any, count: int) -> list[np.ndarray]:
    stream = iter(dataset)
    return [next(stream)[1].numpy() for _ in range(count)]


def test_training_stream_is_endless_and_deterministic(videos_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "latents"
    manifest = cache_latents(videos_dir=videos_dir, out_dir=out, encode=fake_encode, settings=settings())
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


def test_cache_latents_keeps_every_codec_and_counts_corrupt_clips(tmp_path: Path, clips: list[Clip]) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    faststart = faststart_mp4(noise)
    bad = {
        "corrupt-random": np.random.default_rng(1).bytes(3000),
        "corrupt-truncated": faststart[: int(len(faststart) * 0.7)],
        "corrupt-html": b"<html><body>404 not found</body></html>",
    }
    videos = tmp_path / "videos"
    with write_shards(videos, max_per_shard=4) as sink:
        for clip in clips:
            sink.write(clip.name, video_sample_files(clip.data, f"clip {clip.name}", {}))
        for key, data in bad.items():
            sink.write(key, video_sample_files(data, "", {}))
    # A real source's report of what it skipped: the manifest carries it, one place for every skip.
    source_report = {"written": len(clips) + len(bad), "skipped": {"not_video": 2}, "skipped_total": 2}
    (videos / "report.json").write_text(json.dumps(source_report))

    for fps in (None, 3.3):
        manifest = cache_latents(
            videos_dir=videos,
            out_dir=tmp_path / f"latents-{fps}",
            encode=mean_pool_encoder,
            settings=LatentSettings(num_frames=4, size=32, val_fraction=0.3, clips_per_shard=8, fps=fps),
        )
        assert manifest["kept"]["total"] == len(clips)
        assert manifest["skipped"]["corrupt"] == len(bad)
        assert manifest["videos_report"] == {"path": str(videos / "report.json"), **source_report}
        assert manifest["fps"] == fps
        kept: dict[str, list[int]] = {}
        for split in ("train", "val"):
            for sample in iter_latent_samples(tmp_path / f"latents-{fps}" / split):
                kept[sample.key] = [frame_index(frame) for frame in sample.frames]
                assert ("frame_times" in sample.metadata) == (fps is not None)
        assert kept == {clip.name: expected_indices(clip, 4, fps) for clip in clips}

    settings_at_fps = LatentSettings(num_frames=4, size=32, val_fraction=0.3, fps=4.0)
    frames = iter_training_frames(videos, settings=settings_at_fps)
    assert frames.shape[1:] == (32, 32, 3) and len(frames) % 4 == 0
