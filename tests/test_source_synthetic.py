"""The ``synthetic`` source: rendered clips written as MP4 shards, with the task's facts."""

from __future__ import annotations

from pathlib import Path

from fovea.data.control import make_control_clip
from fovea.data.shards import iter_video_samples
from fovea.data.sources.synthetic import write_synthetic_videos
from fovea.data.synthetic import make_clip
from fovea.params import DataParams


def test_write_synthetic_videos(tmp_path: Path) -> None:
    params = DataParams(task="sprites", seed=3, num_clips=5, frames_per_clip=4, size=32, clips_per_shard=2, sprites=2)
    summary = write_synthetic_videos(params, tmp_path / "videos")
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
    params = DataParams(task="control", seed=4, num_clips=3, frames_per_clip=6, size=32, distractors=5)
    write_synthetic_videos(params, tmp_path / "videos")
    sample = list(iter_video_samples(tmp_path / "videos"))[1]
    expected = make_control_clip(4, 1, 6, 32, 5)
    assert sample.caption == expected.caption
    assert sample.metadata["target"] == expected.metadata["target"]
    assert len(sample.metadata["distractors"]) == 5 and len(sample.metadata["target"]["cells"]) == 6
