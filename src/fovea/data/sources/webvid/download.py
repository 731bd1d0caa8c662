"""Download one video with time limits, retries with backoff and a size cap, and say why not.

Failures are sorted into the report's skip reasons (``bad_url``, ``dead``, ``timeout``,
``too_large``, ``not_video``) and marked permanent or transient: only transient ones (timeouts,
5xx/429, connection errors) are tried again on a rerun.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from fovea.data.decode import VideoDecodeError, probe_video
from fovea.data.sources.webvid.listing import USER_AGENT
from fovea.params import DataParams

__all__ = [
    "DownloadSettings",
    "DownloadStopped",
    "FetchFailure",
    "Fetched",
    "fetch_video",
    "new_session",
]

# Statuses worth another attempt: the server may answer differently in a moment.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Content types that are certainly not a video (error pages, JSON APIs).
_TEXT_TYPE = re.compile(r"^\s*(text/|application/(json|xml|xhtml\+xml|javascript)\b)", re.IGNORECASE)
_CHUNK_BYTES = 1 << 16


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
    timeout_reruns: int = 1  # later runs that may try again a URL that timed out

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
            timeout_reruns=data.timeout_reruns,
        )


class DownloadStopped(Exception):
    """The run is being stopped (Ctrl-C): the download is abandoned, its outcome unknown."""


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
    session: requests.Session, url: str, settings: DownloadSettings, stop: threading.Event
) -> Fetched | FetchFailure:
    deadline = time.monotonic() + settings.total_timeout
    try:
        with session.get(
            url,
            stream=True,
            timeout=(settings.connect_timeout, settings.read_timeout),
            headers={"User-Agent": USER_AGENT},
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
                if stop.is_set():
                    raise DownloadStopped(url)
                received += len(chunk)
                if received > settings.max_bytes:
                    detail = f"over data.max_bytes {settings.max_bytes} while streaming"
                    return FetchFailure("too_large", detail, permanent=True)
                if time.monotonic() > deadline:
                    return FetchFailure(
                        "timeout",
                        f"download not finished after {settings.total_timeout:g}s ({received} bytes)",
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
    url: str,
    settings: DownloadSettings,
    session: requests.Session | None = None,
    stop: threading.Event | None = None,
) -> Fetched | FetchFailure:
    """Download one video with retries and check it is one (PyAV opens it).

    Transient failures (timeouts, 5xx/429, connection errors) are retried ``settings.retries``
    times, waiting ``backoff * 2**attempt`` seconds; permanent ones (bad URL, 4xx, too large,
    not a video) return at once. Only http and https are fetched.

    Raises:
        DownloadStopped: ``stop`` was set between two chunks or during a backoff.
    """
    stop = stop or threading.Event()
    invalid = _check_url(url)
    if invalid is not None:
        return invalid
    own_session = session is None
    session = session or new_session(pool_size=1)
    try:
        for attempt in range(settings.retries + 1):
            outcome = _fetch_once(session, url, settings, stop)
            if isinstance(outcome, Fetched) or outcome.permanent or attempt == settings.retries:
                break
            if stop.wait(settings.backoff * 2**attempt):
                raise DownloadStopped(url)
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


def new_session(pool_size: int) -> requests.Session:
    session = requests.Session()
    # Retries are ours (with reasons and backoff); urllib3's own would hide them.
    adapter = HTTPAdapter(pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
