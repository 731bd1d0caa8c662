"""The ``folder`` source: a directory of video files, captions from a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sample_clips import Clip, clips, frames_of_levels  # noqa: F401 - a fixture
from video_fixtures import faststart_mp4

from fovea.data.shards import iter_video_samples
from fovea.data.sources import VideoSourceError, write_videos
from fovea.data.sources.keys import sample_key
from fovea.params import DataParams, parse_params


def data_params(**data: Any) -> DataParams:
    return parse_params({"data": data}).data


def test_folder_source_with_captions_csv(tmp_path: Path, clips: list[Clip]) -> None:
    folder = tmp_path / "videos-in"
    (folder / "nested.dir").mkdir(parents=True)
    expected_keys = {}
    for clip in clips:
        # One upper-case extension: extensions match in any case.
        extension = clip.extension.upper() if clip.name == "mpeg4-mov" else clip.extension
        relative = f"{clip.name}.{extension}"
        (folder / relative).write_bytes(clip.data)
        expected_keys[sample_key(clip.name)] = clip
    (folder / "nested.dir" / "clip.v2.mp4").write_bytes(clips[0].data)
    (folder / "nested_dir_clip_v2.webm").write_bytes(clips[0].data)  # same key once sanitised
    (folder / "broken.mp4").write_bytes(b"\x00\x01 not a video")
    (folder / "notes.txt").write_text("not a video extension: ignored")
    captions = tmp_path / "captions.csv"
    pd.DataFrame(
        {
            "file": ["h264-landscape.mp4", "nested.dir/clip.v2.mp4", "no-such-file.mp4"],
            "caption": ["grey levels rising", "a nested clip", "orphan"],
        }
    ).to_csv(captions, index=False)
    params = data_params(source="folder", folder=str(folder), captions_csv=str(captions))

    report = write_videos(params, out_dir=tmp_path / "videos")

    samples = {sample.key: sample for sample in iter_video_samples(tmp_path / "videos")}
    collided = [key for key in samples if key.startswith("nested_dir_clip_v2")]
    assert set(samples) == set(expected_keys) | set(collided) and len(collided) == 2
    assert samples["h264-landscape"].caption == "grey levels rising"
    assert samples["nested_dir_clip_v2"].caption == "a nested clip"
    assert samples["nested_dir_clip_v2"].metadata["path"] == "nested.dir/clip.v2.mp4"
    for key, clip in expected_keys.items():
        assert samples[key].mp4 == clip.data
    assert report["skipped"] == {"unreadable": 0, "too_large": 0, "not_video": 1, "corrupt": 0}
    assert report["captions_unmatched"] == 1
    assert report["uncaptioned"] == len(samples) - 2

    # Probed durations filter; max_videos caps the files tried (broken.mp4, sorted first,
    # counts), not the files written.
    limited = data_params(source="folder", folder=str(folder), min_duration=2.0, max_videos=2)
    report = write_videos(limited, out_dir=tmp_path / "long")
    assert [sample.key for sample in iter_video_samples(tmp_path / "long")] == ["h264-vfr"]
    assert report["tried"] == 2 and report["max_videos_reached"]
    assert report["filtered_by_duration"] == 3  # h264-landscape, h264-mkv, h264-ntsc-wide


def test_folder_source_with_nothing_usable_stops(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"nope")
    (folder / "b.webm").write_bytes(b"nope")
    with pytest.raises(VideoSourceError, match="not_video 2"):
        write_videos(data_params(source="folder", folder=str(folder)), out_dir=tmp_path / "o")
    with pytest.raises(VideoSourceError, match="not a directory"):
        write_videos(data_params(source="folder", folder=str(tmp_path / "none")), tmp_path / "o")


def test_folder_of_undecodable_files_stops_in_the_videos_stage(tmp_path: Path, clips: list[Clip]) -> None:
    """Files that open but do not decode are skipped where videos are admitted, so a folder
    of nothing else stops here with the counts, not two stages later in the latents stage."""
    truncated = faststart_mp4(frames_of_levels(12, 32, 32))  # its index first: a cut copy opens
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "random.mp4").write_bytes(bytes(range(256)) * 16)
    (folder / "truncated.mp4").write_bytes(truncated[: int(len(truncated) * 0.7)])
    (folder / "truncated-tail.mp4").write_bytes(truncated[: int(len(truncated) * 0.95)])
    params = data_params(source="folder", folder=str(folder))
    out = tmp_path / "videos"
    with pytest.raises(VideoSourceError) as raised:
        write_videos(params, out_dir=out)
    message = str(raised.value)
    assert message.startswith("no usable videos from the folder source")
    assert "not_video 2, corrupt 2" in message and "truncated" in message
    assert not out.exists()

    (folder / "good.mp4").write_bytes(clips[0].data)
    report = write_videos(params, out_dir=out)
    assert [sample.key for sample in iter_video_samples(out)] == ["good"]
    assert report["skipped"] == {"unreadable": 0, "too_large": 0, "not_video": 2, "corrupt": 2}
    assert {example["key"] for example in report["examples"]["corrupt"]} == {"truncated", "truncated-tail"}
