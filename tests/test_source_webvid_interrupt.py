"""Ctrl-C (or SIGTERM) stops the `videos` stage's downloads at once: in-flight requests are
abandoned, finished outcomes are in the cache index, no partial file is left.

The stage runs as a subprocess against a loopback server whose slow URLs would hold a worker for
a minute; nothing beyond 127.0.0.1 is contacted.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from http_server import Route, Server, no_proxies, server  # noqa: F401 - fixtures
from sample_clips import frames_of_levels

from fovea.data.encode import encode_mp4

REPO = Path(__file__).resolve().parents[1]
_HANG = 60.0  # far longer than the test may take: only abandoning the request ends it
_STOP_WITHIN = 2.0  # seconds from the signal to the process's exit


def _index_keys(index: Path) -> set[str]:
    if not index.is_file():
        return set()
    return {json.loads(line)["key"] for line in index.read_text().splitlines() if line.strip()}


def _wait_for(condition, timeout: float, what: str) -> None:  # noqa: ANN001 - a callable
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_abandons_downloads_and_keeps_finished_outcomes(
    tmp_path: Path, server: Server, signum: signal.Signals
) -> None:
    video = encode_mp4(frames_of_levels(4, 16, 16), fps=8)
    server.routes["/v/good.mp4"] = Route(body=video)
    server.routes["/v/gone.mp4"] = Route(404, b"gone", "text/plain")
    server.routes["/v/silent.mp4"] = Route(delay=_HANG)  # no headers at all
    server.routes["/v/stalled.mp4"] = Route(body=video, stall_after=len(video) // 2, delay=_HANG)
    keys = ["good", "gone", "silent", "stalled"]
    url_list = tmp_path / "list.csv"
    pd.DataFrame({"videoid": keys, "contentUrl": [server.url(f"/v/{key}.mp4") for key in keys], "name": keys}).to_csv(
        url_list, index=False
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "source": "webvid",
                    "url_list": str(url_list),
                    "download_workers": 4,
                    "read_timeout": _HANG,
                    "download_timeout": _HANG,
                    "retries": 2,
                }
            }
        )
    )
    out = tmp_path / "videos"
    cache = tmp_path / "videos_cache"
    stage = subprocess.Popen(
        [sys.executable, str(REPO / "stages" / "videos.py"), "--params", str(params), "--out", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_for(lambda: {"good", "gone"} <= _index_keys(cache / "index.jsonl"), 30, "the fast URLs")
        _wait_for(lambda: server.hits["/v/silent.mp4"] and server.hits["/v/stalled.mp4"], 10, "requests")
        time.sleep(0.2)  # the stalled download is now between two chunks
        stage.send_signal(signum)
        signalled = time.monotonic()
        _, stderr = stage.communicate(timeout=10)
        stopped_after = time.monotonic() - signalled
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait()

    assert stopped_after <= _STOP_WITHIN, f"{stopped_after:.2f}s after {signum.name}"
    assert stage.returncode == 130, stderr
    assert "videos: interrupted" in stderr
    assert _index_keys(cache / "index.jsonl") == {"good", "gone"}  # finished outcomes kept
    assert not out.exists()  # no shards from an interrupted run
    leftovers = [path.name for path in cache.rglob("*") if path.is_file()]
    assert sorted(leftovers) == ["good.mp4", "index.jsonl"]  # no partial download
    assert server.hits["/v/silent.mp4"] == 1 and server.hits["/v/stalled.mp4"] == 1  # no retry
