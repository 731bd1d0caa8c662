"""The videos stage's real sources (webvid, shards, folder), frame sampling at an fps, and the
params that configure them.

Every network test talks to an HTTP server the test starts on 127.0.0.1; nothing else is
contacted (bad URLs are rejected before any connection is tried).
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
import pytest
from video_fixtures import encode_clip, faststart_mp4

from fovea.data.latents import cache_latents, iter_training_frames
from fovea.data.shards import (
    iter_latent_samples,
    iter_video_samples,
    list_shards,
    video_sample_files,
    write_shards,
)
from fovea.data.sources import write_videos
from fovea.data.video import ClipTooShortError, encode_mp4, load_clip, probe_video
from fovea.data.videos import REPORT_NAME, VideoSourceError, sample_key
from fovea.data.webvid import parse_duration
from fovea.params import DataParams, ParamsError, parse_params

# --------------------------------------------------------------------------- test videos

# Frame i of every test clip is a uniform grey of level 16 + 6 * i, so the index of a decoded
# frame can be read back from its mean whatever the codec, size or crop.
_LEVEL_BASE, _LEVEL_STEP = 16, 6
_BIT_RATE = 4_000_000  # ample for flat frames: decoded levels stay exact


def _frames(count: int, height: int, width: int) -> np.ndarray:
    levels = _LEVEL_BASE + _LEVEL_STEP * np.arange(count)
    assert levels.max() <= 255
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).astype(np.uint8)


def _frame_index(frame: np.ndarray) -> int:
    return round((float(frame.mean()) - _LEVEL_BASE) / _LEVEL_STEP)


@dataclass(frozen=True)
class Clip:
    name: str
    extension: str
    data: bytes
    frame_times: list[float]  # seconds of each frame from the first


# A variable frame rate clip: intervals of 40, 120 and 250 ms in turn.
_VFR_MS = [0]
for _gap in [40, 120, 250] * 6:
    _VFR_MS.append(_VFR_MS[-1] + _gap)


def _cfr_times(count: int, rate: Fraction | int) -> list[float]:
    return [float(i / Fraction(rate)) for i in range(count)]


def _make_clips() -> list[Clip]:
    available = av.codecs_available
    specs: list[tuple[str, str, str, str, int, int, Fraction | int, int]] = [
        # name, codec, container format, extension, height, width, rate, frames
        ("h264-landscape", "libx264", "mp4", "mp4", 48, 64, 8, 12),
        ("h264-ntsc-wide", "libx264", "mp4", "mp4", 36, 64, Fraction(30000, 1001), 36),
        ("mpeg4-avi-portrait", "mpeg4", "avi", "avi", 80, 48, 24, 30),
        ("mpeg4-mov", "mpeg4", "mov", "mov", 64, 64, 12, 16),
        ("h264-mkv", "libx264", "matroska", "mkv", 40, 72, 25, 32),
    ]
    if "libvpx" in available:
        specs.append(("vp8-webm", "libvpx", "webm", "webm", 64, 96, 30, 36))
    if "libvpx-vp9" in available:
        specs.append(("vp9-webm", "libvpx-vp9", "webm", "webm", 72, 48, 10, 14))
    clips = [
        Clip(name, ext, encode_clip(_frames(count, h, w), codec, fmt, rate, bit_rate=_BIT_RATE),
             _cfr_times(count, rate))
        for name, codec, fmt, ext, h, w, rate, count in specs
    ]
    vfr = encode_clip(_frames(len(_VFR_MS), 48, 64), "libx264", "mp4", 8, pts_ms=_VFR_MS,
                      bit_rate=_BIT_RATE)
    clips.append(Clip("h264-vfr", "mp4", vfr, [ms / 1000 for ms in _VFR_MS]))
    return clips


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    return _make_clips()


def _expected_indices(clip: Clip, num: int, fps: float | None) -> list[int]:
    count = len(clip.frame_times)
    if fps is None:
        stride = (count - 1) // (num - 1)  # one constant stride, centred
        first = (count - 1 - stride * (num - 1)) // 2
        return [first + stride * i for i in range(num)]
    # The frame on screen at i / fps: the last one starting at or before it.
    return [
        max(j for j, t in enumerate(clip.frame_times) if t <= i / fps + 1e-9) for i in range(num)
    ]


def _mean_pool_encoder(frames: np.ndarray) -> np.ndarray:
    """A stand-in VAE: 8x8 mean pooling into 4 channels ([N, H, W, 3] -> [N, 4, H/8, W/8])."""
    n, h, w, _ = frames.shape
    pooled = frames.reshape(n, h // 8, 8, w // 8, 8, 3).mean(axis=(2, 4)) / 255.0
    return np.concatenate([pooled, pooled[..., :1]], axis=-1).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------- frame sampling


# Sample times at 3.3 and 5.5 fps stay over 2 ms from every frame of every test clip: WebM and
# Matroska round timestamps to milliseconds, which would make an exact tie go either way.
@pytest.mark.parametrize("fps", [None, 3.3, 5.5])
def test_every_codec_and_frame_rate_decodes_to_the_requested_frames(
    clips: list[Clip], fps: float | None
) -> None:
    names = {clip.name for clip in clips}
    assert {"h264-landscape", "mpeg4-avi-portrait", "h264-mkv", "h264-vfr"} <= names
    for clip in clips:
        sampled = load_clip(clip.data, num=4, size=32, fps=fps)
        expected = _expected_indices(clip, 4, fps)
        assert sampled.frames.shape == (4, 32, 32, 3), clip.name
        assert [_frame_index(frame) for frame in sampled.frames] == expected, clip.name
        assert sampled.indices == expected, clip.name
        if fps is not None:
            np.testing.assert_allclose(
                sampled.times, [clip.frame_times[i] for i in expected], atol=1e-3
            )


def test_fps_sampling_reads_variable_frame_rate_by_time(clips: list[Clip]) -> None:
    vfr = next(clip for clip in clips if clip.name == "h264-vfr")
    # Frames start at 0, 40, 160, 410, 450 ms: each sample time 0, 100, .., 500 ms gets the
    # frame on screen then, so the long 250 ms frame gap repeats frame 2.
    sampled = load_clip(vfr.data, num=6, size=32, fps=10.0)
    assert sampled.indices == [0, 1, 2, 2, 2, 4]
    assert sampled.times == [0.0, 0.04, 0.16, 0.16, 0.16, 0.45]
    # Evenly over the clip picks by frame count, not time: a different choice.
    assert load_clip(vfr.data, num=6, size=32).indices != sampled.indices


def test_fps_sampling_rejects_a_clip_shorter_than_the_span() -> None:
    clip = encode_mp4(_frames(8, 32, 32), fps=8)  # frames at 0 .. 0.875 s
    assert load_clip(clip, num=8, size=32, fps=8.0).indices == list(range(8))
    with pytest.raises(ClipTooShortError, match=r"0\.875s"):
        load_clip(clip, num=8, size=32, fps=7.0)  # the last sample, 1.0 s, is past the end


def test_probe_video_reads_container_facts(clips: list[Clip]) -> None:
    for clip in clips:
        info = probe_video(clip.data)
        assert info.width > 0 and info.height > 0 and info.codec, clip.name
        assert info.duration is not None and info.duration > 0, clip.name


def test_cache_latents_keeps_every_codec_and_counts_corrupt_clips(
    tmp_path: Path, clips: list[Clip]
) -> None:
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

    for fps in (None, 3.3):
        manifest = cache_latents(
            videos,
            tmp_path / f"latents-{fps}",
            _mean_pool_encoder,
            num_frames=4,
            size=32,
            val_fraction=0.3,
            clips_per_shard=8,
            fps=fps,
        )
        assert manifest["kept"]["total"] == len(clips)
        assert manifest["skipped"]["corrupt"] == len(bad)
        assert manifest["fps"] == fps
        kept: dict[str, list[int]] = {}
        for split in ("train", "val"):
            for sample in iter_latent_samples(tmp_path / f"latents-{fps}" / split):
                kept[sample.key] = [_frame_index(frame) for frame in sample.frames]
                assert ("frame_times" in sample.metadata) == (fps is not None)
        assert kept == {clip.name: _expected_indices(clip, 4, fps) for clip in clips}

    frames = iter_training_frames(videos, 4, 32, 0.3, fps=4.0)
    assert frames.shape[1:] == (32, 32, 3) and len(frames) % 4 == 0


# --------------------------------------------------------------------------- a local server


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "video/mp4"
    send_length: bool = True
    delay: float = 0.0  # seconds of silence before the status line


@dataclass
class Server:
    base: str
    routes: dict[str, Route]
    hits: Counter[str] = field(default_factory=Counter)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture()
def server() -> Iterator[Server]:
    routes: dict[str, Route] = {}
    hits: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            with lock:
                hits[self.path] += 1
            route = routes.get(self.path, Route(404, b"not found", "text/plain"))
            if route.delay:
                # Bounded, and cut short when the test ends, so no thread outlives it long.
                stop.wait(route.delay)
                return
            self.send_response(route.status)
            if route.content_type:
                self.send_header("Content-Type", route.content_type)
            if route.send_length:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            # The client may hang up early (e.g. over the size limit).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", routes, hits)
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests honours proxy variables; the test server must be reached directly.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _params(**data: Any) -> DataParams:
    return parse_params({"data": data}).data


# --------------------------------------------------------------------------- webvid

_READ_TIMEOUT = 0.5
_SILENT_FOR = 10.0  # the silent route outlasts every attempt's read timeout


def _closed_port() -> int:
    """A local port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _webvid_list(server: Server) -> tuple[pd.DataFrame, set[str]]:
    """A WebVid-format list over every kind of URL; returns it and the keys that are good."""
    good = {str(1000 + i): encode_mp4(_frames(10, 32, 48), fps=8) for i in range(3)}
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
    return _params(**{**settings, **overrides})


def _shard_bytes(directory: Path) -> list[bytes]:
    return [path.read_bytes() for path in list_shards(directory)]


def test_webvid_downloads_good_videos_and_reports_every_failure(
    tmp_path: Path, server: Server
) -> None:
    frame, good = _webvid_list(server)
    server.routes["/list.csv"] = Route(
        body=frame.to_csv(index=False).encode(), content_type="text/csv"
    )
    params = _webvid_params(server.url("/list.csv"))
    out = tmp_path / "data" / "videos"

    started = time.monotonic()
    report = write_videos(params, seed=0, out_dir=out)
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
    assert report["filtered_by_duration"] == 1
    assert report["skipped"] == {
        "bad_url": 2,
        "dead": 3,
        "timeout": 1,
        "too_large": 2,
        "not_video": 2,
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
    again = write_videos(params, seed=0, out_dir=out)
    video_hits = {path: n for path, n in server.hits.items() if path.startswith("/v/")}
    assert video_hits == {"/v/broken.mp4": 2, "/v/silent.mp4": 2}
    assert again["downloaded"] == 3 and again["from_cache"] == 10
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

    import fovea.data.webvid as webvid

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # as if the run was stopped after downloading

    real_write_shards = webvid.write_shards
    monkeypatch.setattr(webvid, "write_shards", crash)
    with pytest.raises(KeyboardInterrupt):
        write_videos(params, seed=0, out_dir=out)
    assert not out.exists()
    assert sum(server.hits.values()) == len(good)

    monkeypatch.setattr(webvid, "write_shards", real_write_shards)
    server.hits.clear()
    report = write_videos(params, seed=0, out_dir=out)
    assert sum(server.hits.values()) == 0
    assert report["written"] == len(good) and report["from_cache"] == len(good)
    assert (tmp_path / "videos_cache" / "index.jsonl").is_file()


def test_webvid_with_nothing_usable_stops_and_keeps_the_old_output(
    tmp_path: Path, server: Server
) -> None:
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
        write_videos(_webvid_params(str(url_list)), seed=0, out_dir=out)
    message = str(raised.value)
    assert "no usable videos" in message
    assert "dead 1" in message and "not_video 1" in message and "bad_url 1" in message
    assert (out / "keep.txt").read_text() == "previous output"


def test_webvid_max_videos_and_duration_parsing(tmp_path: Path, server: Server) -> None:
    assert parse_duration("PT00H01M05S") == 65.0
    assert parse_duration("PT1H") == 3600.0
    assert parse_duration(12) == 12.0 and parse_duration("7.5") == 7.5
    assert parse_duration(float("nan")) is None and parse_duration("soon") is None

    video = encode_mp4(_frames(4, 16, 16), fps=8)
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
    report = write_videos(params, seed=0, out_dir=tmp_path / "videos")
    assert [sample.key for sample in iter_video_samples(tmp_path / "videos")] == ["2", "3"]
    assert report["max_videos_reached"] and report["filtered_by_duration"] == 2
    assert set(server.hits) == {"/v/2.mp4", "/v/3.mp4"}


# --------------------------------------------------------------------------- shards


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
    params = _params(source="shards", shards=f"{base}/{{00000..00003}}.tar", clips_per_shard=3)
    out = tmp_path / "videos"

    report = write_videos(params, seed=0, out_dir=out)

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
        "duplicate_key": 1,
    }
    assert report["written"] == 4 and report["entries"] == 7


# --------------------------------------------------------------------------- folder


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
    params = _params(source="folder", folder=str(folder), captions_csv=str(captions))

    report = write_videos(params, seed=0, out_dir=tmp_path / "videos")

    samples = {sample.key: sample for sample in iter_video_samples(tmp_path / "videos")}
    collided = [key for key in samples if key.startswith("nested_dir_clip_v2")]
    assert set(samples) == set(expected_keys) | set(collided) and len(collided) == 2
    assert samples["h264-landscape"].caption == "grey levels rising"
    assert samples["nested_dir_clip_v2"].caption == "a nested clip"
    assert samples["nested_dir_clip_v2"].metadata["path"] == "nested.dir/clip.v2.mp4"
    for key, clip in expected_keys.items():
        assert samples[key].mp4 == clip.data
    assert report["skipped"] == {"unreadable": 0, "too_large": 0, "not_video": 1}
    assert report["captions_unmatched"] == 1
    assert report["uncaptioned"] == len(samples) - 2

    # Probed durations filter; max_videos caps the files tried (broken.mp4, sorted first,
    # counts), not the files written.
    limited = _params(source="folder", folder=str(folder), min_duration=2.0, max_videos=2)
    report = write_videos(limited, seed=0, out_dir=tmp_path / "long")
    assert [sample.key for sample in iter_video_samples(tmp_path / "long")] == ["h264-vfr"]
    assert report["tried"] == 2 and report["max_videos_reached"]
    assert report["filtered_by_duration"] == 3  # h264-landscape, h264-mkv, h264-ntsc-wide


def test_folder_source_with_nothing_usable_stops(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"nope")
    (folder / "b.webm").write_bytes(b"nope")
    with pytest.raises(VideoSourceError, match="not_video 2"):
        write_videos(_params(source="folder", folder=str(folder)), seed=0, out_dir=tmp_path / "o")
    with pytest.raises(VideoSourceError, match="not a directory"):
        write_videos(_params(source="folder", folder=str(tmp_path / "none")), 0, tmp_path / "o")


# --------------------------------------------------------------------------- params


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
