"""A WebVid-format list: read it (CSV or parquet, local or http(s)) and pick the entries to try.

A list has WebVid's columns: ``videoid``, ``contentUrl``, ``name`` (the caption), ``duration``
(ISO 8601, ``PT00H00M21S``, or seconds), ``page_dir`` and any others; every column goes into the
sample's ``{key}.json``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import requests

from fovea.data.sources.admission import duration_in_range
from fovea.data.sources.errors import VideoSourceError
from fovea.data.sources.keys import sample_key
from fovea.data.sources.report import SourceReport
from fovea.params import DataParams

__all__ = ["USER_AGENT", "WebVidEntry", "parse_duration", "read_url_list", "select_entries"]

USER_AGENT = "fovea-videos/0.1"  # sent with every request: the list's and the videos'

# Column names: WebVid's first, then the generic names other lists (video2dataset's) use.
_KEY_COLUMNS = ("videoid", "key")
_URL_COLUMNS = ("contentUrl", "url")
_CAPTION_COLUMNS = ("name", "caption")
_DURATION_COLUMNS = ("duration",)

_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


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


def read_url_list(location: str, connect_timeout: float = 10.0, read_timeout: float = 60.0) -> pd.DataFrame:
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
                headers={"User-Agent": USER_AGENT},
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
            f"reading parquet list {location!r} needs pyarrow or fastparquet (pip install pyarrow): {error}"
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


def select_entries(frame: pd.DataFrame, data: DataParams, report: SourceReport) -> list[WebVidEntry]:
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
