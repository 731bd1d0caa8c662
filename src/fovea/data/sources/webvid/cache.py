"""The download cache: finished downloads and permanent failures, kept across runs.

Every outcome is recorded as it happens, so a rerun, even after a crash, fetches only what is
missing or failed transiently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fovea.data.sources.webvid.download import DownloadSettings, Fetched, FetchFailure
from fovea.data.sources.webvid.listing import WebVidEntry
from fovea.io import write_bytes_atomic

__all__ = ["DownloadCache", "default_cache_dir"]


def default_cache_dir(out_dir: Path) -> Path:
    """``data/videos`` -> ``data/videos_cache``: a sibling, so it survives the atomic rename."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + "_cache")


class DownloadCache:
    """Finished downloads and permanent failures, kept across runs.

    ``videos/<2 hex>/<key>.mp4`` holds each downloaded file (written to a temporary name, then
    renamed); ``index.jsonl`` gets one line per outcome, appended as it happens, the last line
    of a key winning. A record counts as done only for the same URL, and an ``ok`` record only
    while its file is there; ``too_large`` is retried when ``max_bytes`` has grown since, and a
    timeout on at most ``timeout_reruns`` later runs (``timed_out_runs`` counts the runs of a
    URL that ended in a timeout), so a rerun after a params tweak asks nothing of a server that
    never answered.
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

    def _same_url_record(self, entry: WebVidEntry) -> dict[str, Any] | None:
        record = self._records.get(entry.key)
        return record if record is not None and record.get("url") == entry.url else None

    def done(self, entry: WebVidEntry, settings: DownloadSettings) -> bool:
        """Whether the entry needs no download this run."""
        record = self._same_url_record(entry)
        if record is None:
            return False
        if record["status"] == "ok":
            path = self.video_path(entry.key)
            return path.is_file() and path.stat().st_size == record.get("bytes")
        if record["status"] == "too_large":
            return settings.max_bytes <= record.get("max_bytes", 0)
        if record["status"] == "timeout":
            return record.get("timed_out_runs", 1) > settings.timeout_reruns
        return bool(record.get("permanent"))

    def store(self, entry: WebVidEntry, outcome: Fetched | FetchFailure, max_bytes: int) -> None:
        """Record an outcome (main thread only: the index is appended line by line)."""
        previous = self._same_url_record(entry) or {}
        record: dict[str, Any] = {"key": entry.key, "url": entry.url}
        if isinstance(outcome, Fetched):
            path = self.video_path(entry.key)
            write_bytes_atomic(path, outcome.video)
            record.update(status="ok", bytes=len(outcome.video), content_type=outcome.content_type)
        else:
            record.update(status=outcome.reason, permanent=outcome.permanent, detail=outcome.detail)
            if outcome.reason == "too_large":
                record["max_bytes"] = max_bytes
            if outcome.reason == "timeout":
                record["timed_out_runs"] = previous.get("timed_out_runs", 0) + 1
        self._records[entry.key] = record
        self._index.write(json.dumps(record, sort_keys=True) + "\n")
        self._index.flush()
