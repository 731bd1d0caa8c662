"""Download every entry the cache does not settle, in worker threads that Ctrl-C abandons.

The workers are daemon threads, not a ``ThreadPoolExecutor``: an executor's threads are joined
when the interpreter exits, so a Ctrl-C would wait for every in-flight download and its retries
(up to ``(retries + 1) * download_timeout``). On SIGINT or SIGTERM the main thread stops handing
out work, records the outcomes that finished, and leaves: a worker still waiting on a server
dies with the process, and a worker between two chunks or in a backoff drops its download. A
download lives in memory until the main thread stores it (atomically), so no partial file is
left behind.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

from tqdm import tqdm

from fovea.data.sources.webvid.cache import DownloadCache
from fovea.data.sources.webvid.download import (
    DownloadSettings,
    DownloadStopped,
    Fetched,
    FetchFailure,
    fetch_video,
    new_session,
)
from fovea.data.sources.webvid.listing import WebVidEntry

__all__ = ["DownloadCounts", "download_missing"]

Outcome = Fetched | FetchFailure


@dataclass(frozen=True)
class DownloadCounts:
    attempted: int  # entries the cache did not settle, tried this run (with their retries)
    downloaded: int  # of which a video came back


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM stop the downloads as Ctrl-C does (the default would kill at once), and Ctrl-C
    stop them even where the process started with SIGINT ignored (a background job of a script
    does; Python then installs no KeyboardInterrupt handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers
        return
    previous = {signum: signal.signal(signum, _raise_interrupt) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _worker(
    tasks: queue.Queue[WebVidEntry | None],
    results: queue.Queue[tuple[WebVidEntry, Outcome]],
    settings: DownloadSettings,
    stop: threading.Event,
) -> None:
    # requests.Session is not thread-safe: one per worker, reused for its downloads.
    with new_session(pool_size=1) as session:
        while (entry := tasks.get()) is not None and not stop.is_set():
            try:
                outcome = fetch_video(entry.url, settings, session, stop)
            except DownloadStopped:
                return
            results.put((entry, outcome))


def download_missing(entries: list[WebVidEntry], cache: DownloadCache, settings: DownloadSettings) -> DownloadCounts:
    """Fetch every entry the cache does not settle, recording each outcome as it comes.

    On Ctrl-C (or SIGTERM) the outcomes already finished are recorded and KeyboardInterrupt
    propagates at once; downloads in flight are abandoned.
    """
    todo = [entry for entry in entries if not cache.done(entry, settings)]
    if not todo:
        return DownloadCounts(0, 0)
    tasks: queue.Queue[WebVidEntry | None] = queue.Queue()
    results: queue.Queue[tuple[WebVidEntry, Outcome]] = queue.Queue()
    stop = threading.Event()
    workers = min(settings.workers, len(todo))
    for index in range(workers):
        threading.Thread(
            target=_worker,
            args=(tasks, results, settings, stop),
            name=f"webvid-{index}",
            daemon=True,
        ).start()

    progress = tqdm(total=len(todo), desc="download", unit="video")
    downloaded = failed = 0

    def store(entry: WebVidEntry, outcome: Outcome) -> None:
        nonlocal downloaded, failed
        cache.store(entry, outcome, settings.max_bytes)
        downloaded += isinstance(outcome, Fetched)
        failed += isinstance(outcome, FetchFailure)
        progress.update()
        progress.set_postfix(failed=failed, refresh=False)

    try:
        with _sigterm_as_interrupt():
            # A bounded window of queued work: downloaded bytes wait in memory only until the
            # main thread stores them.
            remaining = iter(todo)
            pending = 0
            while True:
                while pending < 2 * workers and (entry := next(remaining, None)) is not None:
                    tasks.put(entry)
                    pending += 1
                if not pending:
                    break
                store(*results.get())
                pending -= 1
    finally:
        stop.set()
        # Outcomes that finished while the main thread was busy or being interrupted.
        with contextlib.suppress(queue.Empty):
            while True:
                store(*results.get_nowait())
        for _ in range(workers):
            tasks.put(None)
        progress.close()
    return DownloadCounts(attempted=len(todo), downloaded=downloaded)
