"""The ``webvid`` source: a WebVid-format list downloaded into shards, every failure counted.

Every network test talks to an HTTP server the test starts on 127.0.0.1; nothing else is
contacted (bad URLs are rejected before any connection is tried).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from http_server import Route, Server, no_proxies, server  # noqa: F401 - fixtures
from sample_clips import frames_of_levels
from video_fixtures import faststart_mp4

from fovea.data.encode import encode_mp4
from fovea.data.shards import iter_video_samples, list_shards
from fovea.data.sources import VideoSourceError, write_videos
from fovea.data.sources.report import REPORT_NAME
from fovea.data.sources.webvid.listing import parse_duration
from fovea.params import DataParams, parse_params


def data_params(**data: Any) -> DataParams:
    return parse_params({"data": data}).data


_READ_TIMEOUT = 0.5
_SILENT_FOR = 10.0  # the silent route outlasts every attempt's read timeout


def _closed_port() -> int:
    """A local port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _webvid_list(server: Server) -> tuple[pd.DataFrame, set[str]]:
    """A WebVid-format list over every kind of URL; returns it and the keys that are good."""
    good = {str(1000 + i): encode_mp4(frames_of_levels(10, 32, 48), fps=8) for i in range(3)}
    for videoid, data in good.items():
        server.routes[f"/v/{videoid}.mp4"] = Route(body=data)
    server.routes["/v/gone.mp4"] = Route(404, b"gone", "text/plain")
    server.routes["/v/broken.mp4"] = Route(500, b"oops", "text/plain")
    server.routes["/v/silent.mp4"] = Route(delay=_SILENT_FOR)
    server.routes["/v/page.mp4"] = Route(body=b"<html>a page</html>", content_type="text/html")
    server.routes["/v/garbage.mp4"] = Route(body=b"\x00garbage" * 100)
    server.routes["/v/big.mp4"] = Route(body=b"\x00" * 300_000)
    server.routes["/v/big-unsized.mp4"] = Route(body=b"\x00" * 300_000, send_length=False)
    server.routes["/v/long.mp4"] = Route(body=next(iter(good.values())))
    truncated = faststart_mp4(frames_of_levels(12, 32, 32))
    server.routes["/v/truncated.mp4"] = Route(body=truncated[: int(len(truncated) * 0.7)])

    rows = [(videoid, server.url(f"/v/{videoid}.mp4")) for videoid in good]
    rows += [
        ("2001", server.url("/v/gone.mp4")),
        ("2002", server.url("/v/broken.mp4")),
        ("2003", server.url("/v/silent.mp4")),
        ("2004", server.url("/v/page.mp4")),
        ("2005", server.url("/v/garbage.mp4")),
        ("2006", server.url("/v/big.mp4")),
        ("2007", server.url("/v/big-unsized.mp4")),
        ("2008", "ftp://127.0.0.1/v/x.mp4"),
        ("2009", "not a url"),
        ("2011", f"http://127.0.0.1:{_closed_port()}/v/refused.mp4"),
        ("2012", server.url("/v/truncated.mp4")),  # opens, but does not decode
        ("1000", server.url("/v/1000.mp4")),  # listed twice
        ("2010", server.url("/v/long.mp4")),  # filtered out by its duration
    ]
    frame = pd.DataFrame(
        {
            "videoid": [videoid for videoid, _ in rows],
            "contentUrl": [url for _, url in rows],
            "name": [f"caption of {videoid}" for videoid, _ in rows],
            "duration": ["PT00H00M10S"] * (len(rows) - 1) + ["PT00H05M00S"],
            "page_dir": ["dir"] * len(rows),
        }
    )
    return frame, set(good)


def _webvid_params(url_list: str, **overrides: Any) -> DataParams:
    settings = {
        "source": "webvid",
        "url_list": url_list,
        "max_duration": 60,
        "download_workers": 4,
        "connect_timeout": 2.0,
        "read_timeout": _READ_TIMEOUT,
        "download_timeout": 5.0,
        "retries": 1,
        "retry_backoff": 0.05,
        "max_bytes": 200_000,
        "clips_per_shard": 2,
    }
    return data_params(**{**settings, **overrides})


def _shard_bytes(directory: Path) -> list[bytes]:
    return [path.read_bytes() for path in list_shards(directory)]


def test_webvid_downloads_good_videos_and_reports_every_failure(tmp_path: Path, server: Server) -> None:
    frame, good = _webvid_list(server)
    server.routes["/list.csv"] = Route(body=frame.to_csv(index=False).encode(), content_type="text/csv")
    params = _webvid_params(server.url("/list.csv"))
    out = tmp_path / "data" / "videos"

    started = time.monotonic()
    report = write_videos(params, out_dir=out)
    elapsed = time.monotonic() - started
    # The silent URL costs two read timeouts and a backoff; everything else is immediate.
    assert elapsed < 2 * _READ_TIMEOUT + 4.0, elapsed

    samples = {sample.key: sample for sample in iter_video_samples(out)}
    assert set(samples) == good
    sample = samples["1000"]
    assert sample.caption == "caption of 1000"
    assert sample.mp4 == server.routes["/v/1000.mp4"].body
    assert sample.metadata["contentUrl"] == server.url("/v/1000.mp4")
    assert sample.metadata["page_dir"] == "dir" and sample.metadata["duration_seconds"] == 10.0
    assert sample.metadata["video"]["width"] == 48

    on_disk = json.loads((out / REPORT_NAME).read_text())
    assert on_disk == report
    assert report["written"] == 3 and report["entries"] == len(frame)
    assert report["downloaded"] == 4 and report["attempted"] == 14
    assert report["filtered_by_duration"] == 1
    assert report["skipped"] == {
        "bad_url": 2,
        "dead": 3,
        "timeout": 1,
        "too_large": 2,
        "not_video": 2,
        "corrupt": 1,
        "duplicate_key": 1,
    }
    assert {example["key"] for example in report["examples"]["timeout"]} == {"2003"}
    assert server.hits["/v/long.mp4"] == 0  # filtered before any request
    assert server.hits["/v/gone.mp4"] == 1  # 404 is permanent: no retry
    assert server.hits["/v/broken.mp4"] == 2  # 500 is transient: one retry
    assert server.hits["/v/silent.mp4"] == 2

    # Rerun: nothing done is fetched again; only transient failures are retried.
    first_shards = _shard_bytes(out)
    server.hits.clear()
    again = write_videos(params, out_dir=out)
    video_hits = {path: n for path, n in server.hits.items() if path.startswith("/v/")}
    assert video_hits == {"/v/broken.mp4": 2, "/v/silent.mp4": 2}
    assert again["attempted"] == 3 and again["downloaded"] == 0 and again["from_cache"] == 11
    assert again["skipped"] == report["skipped"]
    assert _shard_bytes(out) == first_shards  # same list + cache: same bytes


def test_webvid_resumes_after_a_crash_without_refetching(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame, good = _webvid_list(server)
    frame = frame[frame["videoid"].isin(good)]
    url_list = tmp_path / "list.parquet"
    try:
        frame.to_parquet(url_list)
    except ImportError:
        url_list = tmp_path / "list.csv"  # no parquet engine installed
        frame.to_csv(url_list, index=False)
    params = _webvid_params(str(url_list))
    out = tmp_path / "videos"

    import fovea.data.sources.webvid as webvid

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # as if the run was stopped after downloading

    real_write_shards = webvid.write_shards
    monkeypatch.setattr(webvid, "write_shards", crash)
    with pytest.raises(KeyboardInterrupt):
        write_videos(params, out_dir=out)
    assert not out.exists()
    assert sum(server.hits.values()) == len(good)

    monkeypatch.setattr(webvid, "write_shards", real_write_shards)
    server.hits.clear()
    report = write_videos(params, out_dir=out)
    assert sum(server.hits.values()) == 0
    assert report["written"] == len(good) and report["from_cache"] == len(good)
    assert (tmp_path / "videos_cache" / "index.jsonl").is_file()


def test_webvid_with_nothing_usable_stops_and_keeps_the_old_output(tmp_path: Path, server: Server) -> None:
    server.routes["/v/page.mp4"] = Route(body=b"<html></html>", content_type="text/html")
    url_list = tmp_path / "list.csv"
    pd.DataFrame(
        {
            "videoid": ["1", "2", "3"],
            "contentUrl": [server.url("/v/missing.mp4"), server.url("/v/page.mp4"), "x"],
            "name": ["a", "b", "c"],
        }
    ).to_csv(url_list, index=False)
    out = tmp_path / "videos"
    out.mkdir()
    (out / "keep.txt").write_text("previous output")

    with pytest.raises(VideoSourceError) as raised:
        write_videos(_webvid_params(str(url_list)), out_dir=out)
    message = str(raised.value)
    assert "no usable videos" in message
    assert "dead 1" in message and "not_video 1" in message and "bad_url 1" in message
    assert (out / "keep.txt").read_text() == "previous output"


def test_webvid_max_videos_and_duration_parsing(tmp_path: Path, server: Server) -> None:
    assert parse_duration("PT00H01M05S") == 65.0
    assert parse_duration("PT1H") == 3600.0
    assert parse_duration(12) == 12.0 and parse_duration("7.5") == 7.5
    assert parse_duration(float("nan")) is None and parse_duration("soon") is None

    video = encode_mp4(frames_of_levels(4, 16, 16), fps=8)
    for i in range(5):
        server.routes[f"/v/{i}.mp4"] = Route(body=video)
    url_list = tmp_path / "list.csv"
    pd.DataFrame(
        {
            "videoid": [str(i) for i in range(5)],
            "contentUrl": [server.url(f"/v/{i}.mp4") for i in range(5)],
            "name": ["x"] * 5,
            "duration": [1, 30, 3, 4, 5],
        }
    ).to_csv(url_list, index=False)
    params = _webvid_params(str(url_list), max_videos=2, min_duration=2, max_duration=10)
    report = write_videos(params, out_dir=tmp_path / "videos")
    assert [sample.key for sample in iter_video_samples(tmp_path / "videos")] == ["2", "3"]
    assert report["max_videos_reached"] and report["filtered_by_duration"] == 2
    assert set(server.hits) == {"/v/2.mp4", "/v/3.mp4"}


@pytest.mark.parametrize("timeout_reruns", [0, 1])
def test_webvid_rerun_asks_nothing_of_settled_urls(tmp_path: Path, server: Server, timeout_reruns: int) -> None:
    """A URL that timed out is tried again on at most `timeout_reruns` later runs, so a rerun
    after a tweak of a param the download does not use makes no request at all."""
    server.routes["/v/good.mp4"] = Route(body=encode_mp4(frames_of_levels(4, 16, 16), fps=8))
    server.routes["/v/silent.mp4"] = Route(delay=_SILENT_FOR)
    url_list = tmp_path / "list.csv"
    pd.DataFrame(
        {
            "videoid": ["good", "silent"],
            "contentUrl": [server.url("/v/good.mp4"), server.url("/v/silent.mp4")],
            "name": ["a", "b"],
        }
    ).to_csv(url_list, index=False)
    out = tmp_path / "videos"

    def run(val_fraction: float) -> tuple[dict[str, Any], float]:
        params = _webvid_params(str(url_list), retries=0, timeout_reruns=timeout_reruns, val_fraction=val_fraction)
        server.hits.clear()
        started = time.monotonic()
        report = write_videos(params, out_dir=out)
        return report, time.monotonic() - started

    first, _ = run(0.125)
    assert server.hits == {"/v/good.mp4": 1, "/v/silent.mp4": 1}
    assert first["downloaded"] == 1 and first["skipped"]["timeout"] == 1

    for _ in range(timeout_reruns):  # the reruns that may try the silent URL again
        again, _ = run(0.25)
        assert server.hits == {"/v/silent.mp4": 1}
        assert again["attempted"] == 1 and again["downloaded"] == 0

    settled, elapsed = run(0.5)
    assert sum(server.hits.values()) == 0, server.hits
    assert settled["attempted"] == 0 and settled["from_cache"] == 2
    assert settled["skipped"]["timeout"] == 1 and settled["written"] == 1
    assert elapsed < _READ_TIMEOUT, elapsed  # no wait on the silent server
    index = [json.loads(line) for line in (tmp_path / "videos_cache" / "index.jsonl").open()]
    silent = [record for record in index if record["key"] == "silent"][-1]
    assert silent["timed_out_runs"] == timeout_reruns + 1
