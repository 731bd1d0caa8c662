"""The ``webvid`` source: download the videos of a WebVid-format list into shards.

A list is a CSV or parquet file (local path or http(s) URL) with WebVid's columns: ``videoid``,
``contentUrl``, ``name`` (the caption), ``duration`` (ISO 8601, ``PT00H00M21S``, or seconds),
``page_dir`` and any others; every column goes into the sample's ``{key}.json``.

Downloads run in a thread pool with connect, read and whole-download time limits, retries with
exponential backoff for transient failures, and a size cap enforced while streaming. Failures
are skipped and counted by reason (``bad_url``, ``dead``, ``timeout``, ``too_large``,
``not_video``, ``duplicate_key``) in ``report.json`` beside the shards.

Resuming: every finished download and every permanent failure is recorded in a download cache
(``data/videos_cache/`` beside ``data/videos/`` by default) as it happens, so a rerun, even
after a crash or Ctrl-C, fetches only what is missing or failed transiently (5xx, connection
errors; timeouts on at most ``data.timeout_reruns`` later runs). The shards themselves are
rebuilt from the cache in list order on every run: they appear only when complete (atomic
directory) and the same list and cache give the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from fovea.data.shards import write_shards
from fovea.data.sources.admission import Rejection, admit_video, video_info_metadata
from fovea.data.sources.registry import register_source
from fovea.data.sources.report import SourceReport
from fovea.data.sources.webvid.cache import DownloadCache, default_cache_dir
from fovea.data.sources.webvid.download import DownloadSettings
from fovea.data.sources.webvid.downloader import download_missing
from fovea.data.sources.webvid.listing import read_url_list, select_entries
from fovea.params import DataParams

__all__ = ["WEBVID_SKIP_REASONS", "download_missing", "write_webvid_videos"]

#: Why a listed video is not in the shards.
WEBVID_SKIP_REASONS: tuple[str, ...] = (
    "bad_url",  # not an http(s) URL with a host
    "dead",  # HTTP error status, refused connection, broken transfer
    "timeout",  # no connection, silence or a download over its time limit, after retries
    "too_large",  # declared or streamed size over data.max_bytes
    "not_video",  # HTML/text/JSON content type, or bytes PyAV cannot open as a video
    "corrupt",  # opens, but its first or last frames do not decode
    "duplicate_key",  # a videoid listed twice (the first is used)
)


@register_source("webvid", requires="url_list")
def write_webvid_videos(data: DataParams, out_dir: Path) -> dict[str, Any]:
    """Download a WebVid-format list's videos (``data.url_list``) into shards at ``out_dir``.

    Selects entries in list order within ``data.min_duration``/``max_duration`` (from the
    list's ``duration``), at most ``data.max_videos`` of them; downloads those not already in
    the download cache (``data.download_cache``, default ``<out_dir>_cache``); then writes the
    good ones, in list order, as ``{key}.mp4`` (the downloaded bytes), ``{key}.txt`` (``name``)
    and ``{key}.json`` (the list's columns plus ``key``, ``source``, ``url``, ``caption``,
    ``duration_seconds``, ``bytes``, ``content_type`` and the probed ``video`` stream), and
    ``out_dir/report.json``.

    Returns:
        The report: entries, filtered, tried, written, skipped by reason with examples,
        downloaded this run and taken from the cache.

    Raises:
        VideoSourceError: the list is unreadable, or no video could be downloaded.
    """
    assert data.url_list is not None  # the source's check requires it
    settings = DownloadSettings.from_params(data)
    report = SourceReport("webvid", data.url_list, WEBVID_SKIP_REASONS)
    frame = read_url_list(data.url_list, data.connect_timeout, data.read_timeout)
    entries = select_entries(frame, data, report)

    cache_dir = Path(data.download_cache) if data.download_cache else default_cache_dir(out_dir)
    cache = DownloadCache(cache_dir)
    try:
        counts = download_missing(entries, cache, settings)
    finally:
        cache.close()

    with write_shards(out_dir, data.clips_per_shard) as sink:
        for entry in tqdm(entries, desc="shards", unit="video"):
            record = cache.record(entry.key)
            if record is None:  # cannot happen after _download; kept as a guard
                report.skip(entry.key, "dead", "no download outcome recorded", url=entry.url)
                continue
            if record["status"] != "ok":
                report.skip(entry.key, record["status"], record.get("detail", ""), url=entry.url)
                continue
            if record["bytes"] > data.max_bytes:  # cached under a larger limit
                detail = f"cached file of {record['bytes']} bytes > data.max_bytes {data.max_bytes}"
                report.skip(entry.key, "too_large", detail, url=entry.url)
                continue
            video = cache.video_path(entry.key).read_bytes()
            # The download was only opened; decoding is checked here, so cached files are too.
            info = admit_video(video, data.max_bytes)
            if isinstance(info, Rejection):
                report.skip(entry.key, info.reason, info.detail, url=entry.url)
                continue
            metadata = {
                **entry.columns,
                "key": entry.key,
                "source": "webvid",
                "url": entry.url,
                "caption": entry.caption,
                "duration_seconds": entry.duration,
                "bytes": len(video),
                "content_type": record.get("content_type"),
                "video": video_info_metadata(info),
            }
            report.wrote(sink, entry.key, video, entry.caption, metadata)
        report.extra.update(
            attempted=counts.attempted,
            downloaded=counts.downloaded,
            from_cache=len(entries) - counts.attempted,
            cache_dir=str(cache_dir),
        )
        return report.finish(sink)
