"""The sources' registry and the params each source checks when params.yaml is read."""

from __future__ import annotations

from typing import Any

import pytest

from fovea.data.sources import source_names, video_source
from fovea.params import ParamsError, parse_params


@pytest.mark.parametrize(
    "source, key", [("webvid", "url_list"), ("shards", "shards"), ("folder", "folder")]
)
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
