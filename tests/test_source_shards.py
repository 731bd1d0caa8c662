"""The ``shards`` source: existing WebDataset shards (video2dataset's layout), local or over http."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from http_server import Route, Server, no_proxies, server  # noqa: F401 - fixtures
from sample_clips import Clip, clips  # noqa: F401 - a fixture

from fovea.data.decode import load_clip
from fovea.data.shards import iter_video_samples
from fovea.data.sources import write_videos
from fovea.params import DataParams, parse_params


def data_params(**data: Any) -> DataParams:
    return parse_params({"data": data}).data


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _v2d_members(key: str, video: bytes, extension: str, caption: str) -> list[tuple[str, bytes]]:
    """One sample as video2dataset writes it."""
    metadata = {
        "url": f"https://example.invalid/{key}",
        "key": key,
        "status": "success",
        "caption": caption,
    }
    return [
        (f"{key}.{extension}", video),
        (f"{key}.txt", caption.encode()),
        (f"{key}.json", json.dumps(metadata).encode()),
    ]


@pytest.mark.parametrize("over_http", [False, True])
def test_shards_source_copies_video2dataset_shards(
    tmp_path: Path, clips: list[Clip], server: Server, over_http: bool
) -> None:
    by_name = {clip.name: clip for clip in clips}
    webm = by_name.get("vp9-webm") or by_name["h264-mkv"]
    source = tmp_path / "v2d"
    source.mkdir()
    first = _v2d_members("000000000", by_name["h264-landscape"].data, "mp4", "a landscape")
    first += _v2d_members("000000001", webm.data, webm.extension, "another container")
    first += [("000000002.json", b'{"status": "success"}')]  # no video member
    first += _v2d_members("000000003", b"not a video", "mp4", "junk")
    second = _v2d_members("sub/000000004", by_name["mpeg4-avi-portrait"].data, "avi", "")
    second += [("000000005.mp4", by_name["h264-mkv"].data)]  # caption only in nothing
    second += _v2d_members("000000000", by_name["h264-vfr"].data, "mp4", "same key again")
    _tar(source / "00000.tar", first)
    _tar(source / "00001.tar", second)
    (source / "00003.tar").write_bytes(b"this is not a tar file" * 50)
    for name in ("00000.tar", "00001.tar", "00003.tar"):
        body = (source / name).read_bytes()
        server.routes[f"/v2d/{name}"] = Route(body=body, content_type="application/x-tar")
    # 00002 does not exist: an unreadable shard, like the broken 00003.
    base = server.url("/v2d") if over_http else str(source)
    params = data_params(source="shards", shards=f"{base}/{{00000..00003}}.tar", clips_per_shard=3)
    out = tmp_path / "videos"

    report = write_videos(params, out_dir=out)

    samples = {sample.key: sample for sample in iter_video_samples(out)}
    assert list(samples) == ["000000000", "000000001", "sub_000000004", "000000005"]
    assert samples["000000000"].mp4 == by_name["h264-landscape"].data  # bytes kept as they are
    assert samples["000000000"].caption == "a landscape"
    assert samples["000000000"].metadata["status"] == "success"  # video2dataset's json kept
    assert samples["000000001"].mp4 == webm.data
    assert samples["000000001"].metadata["source_ext"] == webm.extension
    assert samples["sub_000000004"].metadata["source_key"] == "sub/000000004"
    assert samples["000000005"].caption == ""
    # A WebM/AVI stored under .mp4 still decodes: PyAV sniffs the container.
    assert load_clip(samples["000000001"].mp4, num=4, size=32).frames.shape == (4, 32, 32, 3)
    assert report["skipped"] == {
        "unreadable_shard": 2,
        "missing_video": 1,
        "too_large": 0,
        "not_video": 1,
        "corrupt": 0,
        "duplicate_key": 1,
    }
    assert report["written"] == 4 and report["entries"] == 7


@pytest.mark.parametrize("cut_in", ["mp4", "txt"])
def test_a_truncated_shard_keeps_the_samples_complete_before_the_cut(
    tmp_path: Path, clips: list[Clip], cut_in: str
) -> None:
    """A shard cut short (an interrupted copy) keeps every sample written in full before the
    cut, and drops the one it cuts through, whichever of its members the cut falls in."""
    video = clips[0].data
    members = []
    for key in ("a", "b", "c"):
        members += _v2d_members(key, video, "mp4", f"caption {key}")
    shard = tmp_path / "00000.tar"
    _tar(shard, members)
    whole = shard.read_bytes()
    with tarfile.open(shard) as archive:
        cut_member = archive.getmember(f"c.{cut_in}")
    cut = cut_member.offset_data + cut_member.size // 2  # mid-way through the member's bytes
    shard.write_bytes(whole[:cut])
    params = data_params(source="shards", shards=str(shard))

    report = write_videos(params, out_dir=tmp_path / "videos")

    samples = {sample.key: sample for sample in iter_video_samples(tmp_path / "videos")}
    assert list(samples) == ["a", "b"]
    assert samples["b"].caption == "caption b" and samples["b"].mp4 == video
    assert report["skipped"]["unreadable_shard"] == 1 and report["entries"] == 2
