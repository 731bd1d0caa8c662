"""The sources' registry and the params each source checks when params.yaml is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fovea.data.sources import register_source, registry, source_names, video_source, write_videos
from fovea.params import DataParams, ParamsError, parse_params


@pytest.mark.parametrize("source, key", [("webvid", "url_list"), ("shards", "shards"), ("folder", "folder")])
def test_a_source_without_its_input_names_the_key(source: str, key: str) -> None:
    with pytest.raises(ParamsError, match=rf"data\.{key}: .*required when data\.source is"):
        parse_params({"data": {"source": source}})


@pytest.mark.parametrize(
    "data, named",
    [
        ({"source": "youtube"}, "data.source"),
        ({"source": "webvid", "url_list": "l.csv", "read_timeout": 0}, "data.read_timeout"),
        ({"source": "webvid", "url_list": "l.csv", "retries": -1}, "data.retries"),
        ({"source": "webvid", "url_list": "l.csv", "max_bytes": 0}, "data.max_bytes"),
        ({"source": "folder", "folder": "f", "max_videos": 0}, "data.max_videos"),
        ({"source": "folder", "folder": "f", "min_duration": 9, "max_duration": 3}, "data"),
        ({"source": "folder", "folder": "f", "nosuch": 1}, "data.nosuch"),
    ],
)
def test_bad_source_params_name_their_key(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ParamsError, match=named.replace(".", r"\.")):
        parse_params({"data": data})


def test_source_params_defaults_and_frames_fps() -> None:
    params = parse_params({})
    assert params.data.source == "synthetic" and params.frames.fps is None
    assert params.data.url_list is None and params.data.download_cache is None
    webvid = parse_params({"data": {"source": "webvid", "url_list": "https://x/l.csv"}})
    assert webvid.data.retries >= 0 and webvid.data.read_timeout > 0
    assert parse_params({"frames": {"fps": 2.5}}).frames.fps == 2.5
    with pytest.raises(ParamsError, match=r"frames\.fps"):
        parse_params({"frames": {"fps": 0}})


def test_the_project_sources_are_registered() -> None:
    assert {"synthetic", "webvid", "shards", "folder"} <= set(source_names())
    with pytest.raises(ValueError, match="valid sources: folder, shards, synthetic, webvid"):
        video_source("youtube")


def test_a_new_source_is_one_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))  # undone after the test
    written = []

    def check(data: DataParams) -> None:
        if data.max_videos is None:
            raise ValueError("data.max_videos: the echo source needs a cap")

    @register_source("echo", requires="folder", check=check)
    def write_echo(data: DataParams, out_dir: Path) -> dict[str, Any]:
        written.append((data.folder, out_dir))
        return {"source": "echo"}

    with pytest.raises(ParamsError, match=r"data\.folder: required when data\.source is 'echo'"):
        parse_params({"data": {"source": "echo"}})
    with pytest.raises(ParamsError, match=r"data\.max_videos: the echo source needs a cap"):
        parse_params({"data": {"source": "echo", "folder": "in"}})
    data = parse_params({"data": {"source": "echo", "folder": "in", "max_videos": 3}}).data
    assert write_videos(data, tmp_path) == {"source": "echo"} and written == [("in", tmp_path)]
    with pytest.raises(ValueError, match="registered twice"):
        register_source("echo")(lambda data, out_dir: {})
