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
after a crash, fetches only what is missing or failed transiently (timeouts, 5xx, connection
errors). The shards themselves are rebuilt from the cache in list order on every run: they
appear only when complete (atomic directory) and the same list and cache give the same bytes.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from tqdm import tqdm

from fovea.data.shards import write_shards
from fovea.data.video import VideoDecodeError, probe_video
from fovea.data.videos import (
    SourceReport,
    VideoSourceError,
    duration_in_range,
    sample_key,
    video_info_metadata,
)
from fovea.params import DataParams

__all__ = [
    "WEBVID_SKIP_REASONS",
    "DownloadCache",
    "DownloadSettings",
    "FetchFailure",
    "WebVidEntry",
    "default_cache_dir",
    "fetch_video",
    "parse_duration",
    "read_url_list",
    "write_webvid_videos",
]

#: Why a listed video is not in the shards.
WEBVID_SKIP_REASONS: tuple[str, ...] = (
    "bad_url",  # not an http(s) URL with a host
    "dead",  # HTTP error status, refused connection, broken transfer
    "timeout",  # no connection, silence or a download over its time limit, after retries
    "too_large",  # declared or streamed size over data.max_bytes
    "not_video",  # HTML/text/JSON content type, or bytes PyAV cannot open as a video
    "duplicate_key",  # a videoid listed twice (the first is used)
)

# Column names: WebVid's first, then the generic names other lists (video2dataset's) use.
_KEY_COLUMNS = ("videoid", "key")
_URL_COLUMNS = ("contentUrl", "url")
_CAPTION_COLUMNS = ("name", "caption")
_DURATION_COLUMNS = ("duration",)

# Statuses worth another attempt: the server may answer differently in a moment.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Content types that are certainly not a video (error pages, JSON APIs).
_TEXT_TYPE = re.compile(
    r"^\s*(text/|application/(json|xml|xhtml\+xml|javascript)\b)", re.IGNORECASE
)
_CHUNK_BYTES = 1 << 16
_USER_AGENT = "fovea-videos/0.1"
_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------- the list


def parse_duration(value: Any) -> float | None:
    """Seconds from WebVid's ISO 8601 durations (``PT00H00M21S``) or plain numbers.

    Returns None for missing or unparsable values (such entries pass the duration filter).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _ISO_DURATION.match(text)
    if not match or not any(match.groupdict().values()):
        return None
    parts = {name: float(number or 0) for name, number in match.groupdict().items()}
    return parts["days"] * 86400 + parts["hours"] * 3600 + parts["minutes"] * 60 + parts["seconds"]


def _is_url(location: str) -> bool:
    return urlsplit(location).scheme.lower() in ("http", "https")


def read_url_list(
    location: str, connect_timeout: float = 10.0, read_timeout: float = 60.0
) -> pd.DataFrame:
    """Read a WebVid-format list: CSV (optionally gzipped) or parquet, local or http(s).

    The format comes from the name (``.parquet``/``.pq``) or the parquet magic bytes; anything
    else is read as CSV. Key columns are read as strings so ids keep leading zeros.

    Raises:
        VideoSourceError: the list cannot be fetched or parsed, or lacks a URL column.
    """
    try:
        if _is_url(location):
            response = requests.get(
                location,
                timeout=(connect_timeout, read_timeout),
                headers={"User-Agent": _USER_AGENT},
            )
            response.raise_for_status()
            raw = response.content
        else:
            raw = Path(location).read_bytes()
    except (OSError, requests.RequestException) as error:
        raise VideoSourceError(f"cannot read data.url_list {location!r}: {error}") from error

    name = urlsplit(location).path.lower() if _is_url(location) else location.lower()
    is_parquet = name.endswith((".parquet", ".pq")) or raw[:4] == b"PAR1"
    try:
        if is_parquet:
            frame = pd.read_parquet(io.BytesIO(raw))
        else:
            gzipped = raw[:2] == b"\x1f\x8b"
            frame = pd.read_csv(
                io.BytesIO(raw),
                dtype={column: str for column in _KEY_COLUMNS},
                compression="gzip" if gzipped else None,
            )
    except ImportError as error:
        raise VideoSourceError(
            f"reading parquet list {location!r} needs pyarrow or fastparquet "
            f"(pip install pyarrow): {error}"
        ) from error
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise VideoSourceError(f"cannot parse data.url_list {location!r}: {error}") from error
    if _first_column(frame, _URL_COLUMNS) is None:
        raise VideoSourceError(
            f"data.url_list {location!r} has no URL column (one of {', '.join(_URL_COLUMNS)}); "
            f"columns: {', '.join(map(str, frame.columns))}"
        )
    return frame


def _first_column(frame: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in frame.columns), None)


def _json_ready(value: Any) -> Any:
    """A list cell as a JSON value (NaN -> null, numpy scalars -> Python, dates -> ISO)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class WebVidEntry:
    """One row of the list, ready to download."""

    key: str
    url: str
    caption: str
    duration: float | None  # seconds, from the list
    columns: dict[str, Any]  # the row, JSON-ready, stored in {key}.json


def _iter_rows(frame: pd.DataFrame, chunk: int = 10_000) -> Iterator[dict[str, Any]]:
    # Row dicts a chunk at a time: lists run to millions of rows and selection stops early.
    for start in range(0, len(frame), chunk):
        yield from frame.iloc[start : start + chunk].to_dict(orient="records")


def _iter_entries(frame: pd.DataFrame) -> Iterator[WebVidEntry]:
    key_column = _first_column(frame, _KEY_COLUMNS)
    url_column = _first_column(frame, _URL_COLUMNS)
    caption_column = _first_column(frame, _CAPTION_COLUMNS)
    duration_column = _first_column(frame, _DURATION_COLUMNS)
    for position, row in enumerate(_iter_rows(frame)):
        columns = {str(name): _json_ready(value) for name, value in row.items()}
        raw_key = columns.get(key_column) if key_column else None
        # Rows without an id are keyed by their line, so they are still tried and reported.
        key = sample_key(str(raw_key)) if raw_key not in (None, "") else f"row-{position:09d}"
        url = columns.get(url_column) if url_column else None
        caption = columns.get(caption_column) if caption_column else None
        duration = parse_duration(row.get(duration_column)) if duration_column else None
        yield WebVidEntry(
            key=key,
            url=str(url).strip() if url is not None else "",
            caption=str(caption) if caption is not None else "",
            duration=duration,
            columns=columns,
        )


def _select(frame: pd.DataFrame, data: DataParams, report: SourceReport) -> list[WebVidEntry]:
    """The entries to try: in list order, within the duration range, up to ``max_videos``.

    Reading stops at the cap, so ``filtered_by_duration`` counts the rows read until then.
    """
    report.entries = len(frame)
    selected: list[WebVidEntry] = []
    seen: set[str] = set()
    for entry in _iter_entries(frame):
        if not duration_in_range(entry.duration, data):
            report.filtered_by_duration += 1
            continue
        if entry.key in seen:
            report.skip(entry.key, "duplicate_key", "videoid listed again", url=entry.url)
            continue
        if data.max_videos is not None and len(selected) == data.max_videos:
            report.max_videos_reached = True
            break
        seen.add(entry.key)
        selected.append(entry)
    return selected


# --------------------------------------------------------------------------- downloading


@dataclass(frozen=True)
class DownloadSettings:
    """Limits of one download; every one of them bounds how long a URL can hold a worker."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # longest silence while waiting for headers or body bytes
    total_timeout: float = 300.0  # longest one attempt may take, all reads together
    retries: int = 2  # extra attempts after a transient failure
    backoff: float = 1.0  # seconds before the first retry, doubled for each further one
    max_bytes: int = 100_000_000
    workers: int = 16

    @classmethod
    def from_params(cls, data: DataParams) -> DownloadSettings:
        return cls(
            connect_timeout=data.connect_timeout,
            read_timeout=data.read_timeout,
            total_timeout=data.download_timeout,
            retries=data.retries,
            backoff=data.retry_backoff,
            max_bytes=data.max_bytes,
            workers=data.download_workers,
        )


@dataclass(frozen=True)
class FetchFailure:
    """Why a download gave nothing; ``permanent`` failures are not retried on a rerun."""

    reason: str
    detail: str
    permanent: bool


@dataclass(frozen=True)
class Fetched:
    video: bytes
    content_type: str | None


def _caused_by_timeout(error: BaseException) -> bool:
    """requests wraps read timeouts during streaming in ConnectionError; look underneath."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.NewConnectionError):
            continue  # refused or unresolvable; urllib3 derives it from ConnectTimeoutError
        if isinstance(
            current,
            (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError),
        ):
            return True
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def _check_url(url: str) -> FetchFailure | None:
    try:
        parts = urlsplit(url)
    except ValueError as error:
        return FetchFailure("bad_url", f"malformed URL: {error}", permanent=True)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        shown = url if len(url) <= 80 else url[:77] + "..."
        return FetchFailure("bad_url", f"not an http(s) URL with a host: {shown!r}", permanent=True)
    return None


def _fetch_once(
    session: requests.Session, url: str, settings: DownloadSettings
) -> Fetched | FetchFailure:
    deadline = time.monotonic() + settings.total_timeout
    try:
        with session.get(
            url,
            stream=True,
            timeout=(settings.connect_timeout, settings.read_timeout),
            headers={"User-Agent": _USER_AGENT},
        ) as response:
            status = response.status_code
            if status >= 400:
                transient = status in _TRANSIENT_STATUS or status >= 500
                detail = f"HTTP {status} {response.reason}"
                return FetchFailure("dead", detail, permanent=not transient)
            content_type = response.headers.get("Content-Type")
            if content_type and _TEXT_TYPE.match(content_type):
                return FetchFailure("not_video", f"content type {content_type}", permanent=True)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > settings.max_bytes:
                detail = f"Content-Length {declared} > data.max_bytes {settings.max_bytes}"
                return FetchFailure("too_large", detail, permanent=True)
            chunks: list[bytes] = []
            received = 0
            # read1 returns whatever has arrived (each wait bounded by the read timeout), so the
            # deadline and size checks run often even when a server trickles bytes.
            while chunk := response.raw.read1(_CHUNK_BYTES, decode_content=True):
                received += len(chunk)
                if received > settings.max_bytes:
                    detail = f"over data.max_bytes {settings.max_bytes} while streaming"
                    return FetchFailure("too_large", detail, permanent=True)
                if time.monotonic() > deadline:
                    return FetchFailure(
                        "timeout",
                        f"download not finished after {settings.total_timeout:g}s "
                        f"({received} bytes)",
                        permanent=False,
                    )
                chunks.append(chunk)
            return Fetched(b"".join(chunks), content_type)
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
    ) as error:
        return FetchFailure("bad_url", f"{type(error).__name__}: {error}", permanent=True)
    except requests.exceptions.TooManyRedirects as error:
        return FetchFailure("dead", f"too many redirects: {error}", permanent=True)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        reason = "timeout" if _caused_by_timeout(error) else "dead"
        return FetchFailure(reason, f"{type(error).__name__}: {error}", permanent=False)


def fetch_video(
    url: str, settings: DownloadSettings, session: requests.Session | None = None
) -> Fetched | FetchFailure:
    """Download one video with retries and check it is one (PyAV opens it).

    Transient failures (timeouts, 5xx/429, connection errors) are retried ``settings.retries``
    times, waiting ``backoff * 2**attempt`` seconds; permanent ones (bad URL, 4xx, too large,
    not a video) return at once. Only http and https are fetched.
    """
    invalid = _check_url(url)
    if invalid is not None:
        return invalid
    own_session = session is None
    session = session or _new_session(pool_size=1)
    try:
        for attempt in range(settings.retries + 1):
            outcome = _fetch_once(session, url, settings)
            if isinstance(outcome, Fetched) or outcome.permanent or attempt == settings.retries:
                break
            time.sleep(settings.backoff * 2**attempt)
    finally:
        if own_session:
            session.close()
    if isinstance(outcome, FetchFailure):
        return outcome
    try:
        probe_video(outcome.video)
    except VideoDecodeError as error:
        content_type = outcome.content_type or "no content type"
        return FetchFailure("not_video", f"{content_type}: {error}", permanent=True)
    return outcome


def _new_session(pool_size: int) -> requests.Session:
    session = requests.Session()
    # Retries are ours (with reasons and backoff); urllib3's own would hide them.
    adapter = HTTPAdapter(pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --------------------------------------------------------------------------- the cache


def default_cache_dir(out_dir: Path) -> Path:
    """``data/videos`` -> ``data/videos_cache``: a sibling, so it survives the atomic rename."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + "_cache")


class DownloadCache:
    """Finished downloads and permanent failures, kept across runs.

    ``videos/<2 hex>/<key>.mp4`` holds each downloaded file (written to a temporary name, then
    renamed); ``index.jsonl`` gets one line per outcome, appended as it happens, the last line
    of a key winning. A record counts as done only for the same URL, and an ``ok`` record only
    while its file is there; ``too_large`` is retried when ``max_bytes`` has grown since.
    """

    INDEX = "index.jsonl"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        (self.directory / "videos").mkdir(parents=True, exist_ok=True)
        self._index_path = self.directory / self.INDEX
        self._records: dict[str, dict[str, Any]] = {}
        if self._index_path.exists():
            for line in self._index_path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
                if isinstance(record, dict) and "key" in record:
                    self._records[record["key"]] = record
        self._index = self._index_path.open("a", encoding="utf-8")

    def close(self) -> None:
        self._index.close()

    def video_path(self, key: str) -> Path:
        # Two levels keep directories small for lists of millions of videos.
        return self.directory / "videos" / key[:2].ljust(2, "_") / f"{key}.mp4"

    def record(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def done(self, entry: WebVidEntry, max_bytes: int) -> bool:
        """Whether the entry needs no download this run."""
        record = self._records.get(entry.key)
        if record is None or record.get("url") != entry.url:
            return False
        if record["status"] == "ok":
            path = self.video_path(entry.key)
            return path.is_file() and path.stat().st_size == record.get("bytes")
        if record["status"] == "too_large":
            return max_bytes <= record.get("max_bytes", 0)
        return bool(record.get("permanent"))

    def store(self, entry: WebVidEntry, outcome: Fetched | FetchFailure, max_bytes: int) -> None:
        """Record an outcome (main thread only: the index is appended line by line)."""
        record: dict[str, Any] = {"key": entry.key, "url": entry.url}
        if isinstance(outcome, Fetched):
            path = self.video_path(entry.key)
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
            temp.write_bytes(outcome.video)
            os.replace(temp, path)
            record.update(status="ok", bytes=len(outcome.video), content_type=outcome.content_type)
        else:
            record.update(status=outcome.reason, permanent=outcome.permanent, detail=outcome.detail)
            if outcome.reason == "too_large":
                record["max_bytes"] = max_bytes
        self._records[entry.key] = record
        self._index.write(json.dumps(record, sort_keys=True) + "\n")
        self._index.flush()


# --------------------------------------------------------------------------- the source


def _download(entries: list[WebVidEntry], cache: DownloadCache, settings: DownloadSettings) -> int:
    """Fetch every entry not yet done into the cache; returns how many were fetched."""
    todo = [entry for entry in entries if not cache.done(entry, settings.max_bytes)]
    if not todo:
        return 0
    local = threading.local()
    sessions: list[requests.Session] = []  # to close them at the end

    def session() -> requests.Session:
        # requests.Session is not thread-safe: one per worker thread, reused for its downloads.
        if not hasattr(local, "session"):
            local.session = _new_session(pool_size=1)
            sessions.append(local.session)
        return local.session

    def fetch(entry: WebVidEntry) -> Fetched | FetchFailure:
        return fetch_video(entry.url, settings, session())

    pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="webvid")
    progress = tqdm(total=len(todo), desc="download", unit="video")
    failed = 0
    try:
        # Submit a bounded window, not the whole list: downloaded bytes wait in memory only
        # until the main thread stores them, and an interrupt leaves little queued work.
        remaining = iter(todo)
        running: dict[Future[Fetched | FetchFailure], WebVidEntry] = {}
        while True:
            while len(running) < 2 * settings.workers:
                entry = next(remaining, None)
                if entry is None:
                    break
                running[pool.submit(fetch, entry)] = entry
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                entry = running.pop(future)
                outcome = future.result()
                cache.store(entry, outcome, settings.max_bytes)
                failed += isinstance(outcome, FetchFailure)
                progress.update()
                progress.set_postfix(failed=failed, refresh=False)
    finally:
        progress.close()
        pool.shutdown(wait=True, cancel_futures=True)
        for open_session in sessions:
            open_session.close()
    return len(todo)


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
    if data.url_list is None:
        raise ValueError("data.url_list is required for the webvid source")
    settings = DownloadSettings.from_params(data)
    report = SourceReport("webvid", data.url_list, WEBVID_SKIP_REASONS)
    frame = read_url_list(data.url_list, data.connect_timeout, data.read_timeout)
    entries = _select(frame, data, report)

    cache_dir = Path(data.download_cache) if data.download_cache else default_cache_dir(out_dir)
    cache = DownloadCache(cache_dir)
    try:
        fetched = _download(entries, cache, settings)
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
            try:
                info = probe_video(video)
            except VideoDecodeError as error:  # the cached file was damaged since
                report.skip(entry.key, "not_video", f"cached file: {error}", url=entry.url)
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
            downloaded=fetched,
            from_cache=len(entries) - fetched,
            cache_dir=str(cache_dir),
        )
        return report.finish(sink)
