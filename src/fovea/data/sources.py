"""The ``videos`` stage's sources, and :func:`write_videos`, which picks one by ``data.source``.

- ``synthetic``: rendered clips (:func:`fovea.data.videos.write_synthetic_videos`);
- ``webvid``: a WebVid-format list downloaded (:func:`fovea.data.webvid.write_webvid_videos`);
- ``shards``: existing WebDataset shards, such as video2dataset writes (:func:`write_shard_videos`);
- ``folder``: a directory of video files with optional captions (:func:`write_folder_videos`).

Every source writes the same layout: ``{key}.mp4``, ``{key}.txt`` (caption), ``{key}.json``
(metadata). Videos are never transcoded: a WebM, Matroska, AVI or QuickTime file is stored as
is under ``{key}.mp4`` (PyAV recognises the container from its bytes, not its name) and its
original extension is kept in the metadata as ``source_ext``. Real sources also write
``report.json`` (what was skipped and why) beside the shards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
import pandas as pd
from braceexpand import braceexpand
from tqdm import tqdm
from webdataset.tariterators import group_by_keys, tar_file_iterator

# The videos-shard readers' own parsing of .txt/.json members, so both read them alike.
from fovea.data.shards import ShardSink, _caption, _metadata, write_shards
from fovea.data.video import VideoInfo
from fovea.data.videos import (
    VIDEO_EXTENSIONS,
    Rejection,
    SourceReport,
    VideoSourceError,
    admit_video,
    duration_in_range,
    sample_key,
    unique_key,
    video_info_metadata,
    write_synthetic_videos,
)
from fovea.data.webvid import write_webvid_videos
from fovea.params import DataParams

__all__ = [
    "FOLDER_SKIP_REASONS",
    "SHARDS_SKIP_REASONS",
    "expand_shard_pattern",
    "write_folder_videos",
    "write_shard_videos",
    "write_videos",
]

#: Why a sample of existing shards is not copied.
SHARDS_SKIP_REASONS: tuple[str, ...] = (
    "unreadable_shard",  # a shard that cannot be opened or is a broken tar (counted once)
    "missing_video",  # a sample without a video member
    "too_large",  # over data.max_bytes
    "not_video",  # bytes PyAV cannot open as a video
    "duplicate_key",  # a key seen in an earlier sample (the first is kept)
)
#: Why a file of a video folder is not copied.
FOLDER_SKIP_REASONS: tuple[str, ...] = ("unreadable", "too_large", "not_video")


def write_videos(data: DataParams, seed: int, out_dir: Path) -> dict[str, Any]:
    """Write the videos of ``data.source`` as shards at ``out_dir`` (replaced when complete).

    Returns:
        The source's summary (real sources: the report also written to ``report.json``).

    Raises:
        VideoSourceError: the source's input is unreadable or yields no usable video.
    """
    out_dir = Path(out_dir)
    if data.source == "synthetic":
        return write_synthetic_videos(data, seed, out_dir)
    if data.source == "webvid":
        return write_webvid_videos(data, out_dir)
    if data.source == "shards":
        return write_shard_videos(data, out_dir)
    if data.source == "folder":
        return write_folder_videos(data, out_dir)
    raise ValueError(f"unknown data.source {data.source!r}")


def _admit(
    key: str,
    video: bytes,
    data: DataParams,
    report: SourceReport,
    **context: str,
) -> VideoInfo | None:
    """The video's info if it may be written; otherwise it is counted (skipped or filtered)."""
    outcome = admit_video(video, data.max_bytes)
    if isinstance(outcome, Rejection):
        report.skip(key, outcome.reason, outcome.detail, **context)
        return None
    if not duration_in_range(outcome.duration, data):
        report.filtered_by_duration += 1
        return None
    return outcome


def _at_cap(data: DataParams, report: SourceReport) -> bool:
    if data.max_videos is not None and report.tried >= data.max_videos:
        report.max_videos_reached = True
        return True
    return False


# --------------------------------------------------------------------------- shards


def expand_shard_pattern(pattern: str) -> list[str]:
    """``dir/{00000..00002}.tar`` -> the three paths (several ``{a,b}`` groups allowed)."""
    return list(braceexpand(pattern))


def _open_shard(url: str, data: DataParams) -> Any:
    protocol = urlsplit(url).scheme.lower()
    if protocol in ("http", "https"):
        import aiohttp  # fsspec's HTTP backend; only needed for URLs

        # Stream (block_size 0): a tar is read front to back, and plain servers lack ranges.
        timeout = aiohttp.ClientTimeout(
            sock_connect=data.connect_timeout, sock_read=data.read_timeout
        )
        return fsspec.open(url, "rb", block_size=0, client_kwargs={"timeout": timeout})
    return fsspec.open(url, "rb")


def _iter_shard(url: str, data: DataParams) -> Iterator[dict[str, Any]]:
    """The samples of one shard as WebDataset dicts (``__key__`` and bytes per extension)."""
    with _open_shard(url, data) as stream:

        def members() -> Iterator[dict[str, Any]]:
            for member in tar_file_iterator(stream):
                yield {**member, "__url__": url}

        yield from group_by_keys(members())


def _video_member(sample: dict[str, Any]) -> tuple[str, bytes] | None:
    for extension in VIDEO_EXTENSIONS:
        if isinstance(sample.get(extension), bytes):
            return extension, sample[extension]
    return None


def _sample_caption(sample: dict[str, Any], metadata: dict[str, Any]) -> str:
    if "txt" in sample:
        return _caption(sample)
    # Some writers keep the caption only in the metadata (video2dataset has it in both).
    caption = metadata.get("caption")
    return caption if isinstance(caption, str) else ""


def write_shard_videos(data: DataParams, out_dir: Path) -> dict[str, Any]:
    """Copy existing WebDataset shards (``data.shards``, a brace pattern) into our layout.

    Shards are read in pattern order through fsspec (local paths, ``http(s)://``, or any
    protocol fsspec knows). Keys are kept (sanitised only when they hold characters our layout
    forbids, e.g. a directory inside the tar); the video bytes are kept as they are, under
    ``{key}.mp4``, whatever the member's extension (``VIDEO_EXTENSIONS``). The caption is the
    ``.txt`` member, else the metadata's ``caption``; the metadata is the ``.json`` member plus
    ``key``, ``source``, ``source_key``, ``source_shard``, ``source_ext``, ``bytes`` and the
    probed ``video`` stream.

    Raises:
        VideoSourceError: no sample could be copied (counts by reason in the message).
    """
    if data.shards is None:
        raise ValueError("data.shards is required for the shards source")
    urls = expand_shard_pattern(data.shards)
    report = SourceReport("shards", data.shards, SHARDS_SKIP_REASONS)
    report.extra["shards_listed"] = len(urls)
    taken: set[str] = set()
    with write_shards(out_dir, data.clips_per_shard) as sink:
        progress = tqdm(desc="shards", unit="video")
        for url in urls:
            if _at_cap(data, report):
                break
            with closing(_iter_shard(url, data)) as samples:
                while not _at_cap(data, report):
                    try:
                        sample = next(samples, None)
                    except Exception as error:  # noqa: BLE001 - any read failure: skip the shard
                        # Samples read before the damage are kept; the rest of the shard is lost.
                        detail = f"{type(error).__name__}: {error}"
                        report.skip(url, "unreadable_shard", detail)
                        break
                    if sample is None:
                        break
                    report.entries += 1
                    progress.update()
                    _copy_sample(sample, url, data, report, sink, taken)
        progress.close()
        return report.finish(sink)


def _copy_sample(
    sample: dict[str, Any],
    url: str,
    data: DataParams,
    report: SourceReport,
    sink: ShardSink,
    taken: set[str],
) -> None:
    source_key = str(sample["__key__"])
    key = sample_key(source_key)
    member = _video_member(sample)
    if member is None:
        report.skip(key, "missing_video", f"no {'/'.join(VIDEO_EXTENSIONS)} member", shard=url)
        return
    if key in taken:
        report.skip(key, "duplicate_key", "key seen in an earlier sample", shard=url)
        return
    extension, video = member
    info = _admit(key, video, data, report, shard=url)
    if info is None:
        return
    taken.add(key)
    metadata = _metadata(sample)
    caption = _sample_caption(sample, metadata)
    metadata.update(
        key=key,
        source="shards",
        source_key=source_key,
        source_shard=url,
        source_ext=extension,
        bytes=len(video),
        video=video_info_metadata(info),
    )
    report.wrote(sink, key, video, caption, metadata)


# --------------------------------------------------------------------------- folder


def _read_captions(location: str) -> dict[str, str]:
    """``file`` (path relative to the folder) -> ``caption`` from a captions CSV."""
    try:
        table = pd.read_csv(location, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise VideoSourceError(f"cannot read data.captions_csv {location!r}: {error}") from error
    missing = [column for column in ("file", "caption") if column not in table.columns]
    if missing:
        raise VideoSourceError(
            f"data.captions_csv {location!r} lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, table.columns))}"
        )
    return {
        Path(file.strip()).as_posix().removeprefix("./"): caption
        for file, caption in zip(table["file"], table["caption"], strict=True)
    }


def _list_videos(root: Path) -> list[Path]:
    return sorted(
        (
            path
            for path in root.rglob("*")
            if path.is_file() and path.suffix.lower().lstrip(".") in VIDEO_EXTENSIONS
        ),
        key=lambda path: path.relative_to(root).as_posix(),
    )


def write_folder_videos(data: DataParams, out_dir: Path) -> dict[str, Any]:
    """Copy the video files under ``data.folder`` (recursively) into shards.

    Files with a ``VIDEO_EXTENSIONS`` extension (any case) are taken in sorted path order. The
    key is the path relative to the folder without its extension, sanitised (``a/b.c.mp4`` ->
    ``a_b_c``); a key two files would share gets a hash suffix. Captions come from
    ``data.captions_csv`` (columns ``file``, the path relative to the folder, and ``caption``);
    a file without one gets an empty caption (counted as ``uncaptioned``).

    Raises:
        VideoSourceError: the folder or captions CSV is unreadable, or no file is a video.
    """
    if data.folder is None:
        raise ValueError("data.folder is required for the folder source")
    root = Path(data.folder)
    if not root.is_dir():
        raise VideoSourceError(f"data.folder {data.folder!r} is not a directory")
    captions = _read_captions(data.captions_csv) if data.captions_csv else {}
    files = _list_videos(root)
    if not files:
        raise VideoSourceError(
            f"data.folder {data.folder!r} holds no video files "
            f"(extensions {', '.join(VIDEO_EXTENSIONS)}, any case, searched recursively)"
        )
    report = SourceReport("folder", data.folder, FOLDER_SKIP_REASONS)
    report.entries = len(files)
    listed = {path.relative_to(root).as_posix() for path in files}
    uncaptioned = 0
    taken: set[str] = set()
    with write_shards(out_dir, data.clips_per_shard) as sink:
        for path in tqdm(files, desc="videos", unit="video"):
            if _at_cap(data, report):
                break
            relative = path.relative_to(root).as_posix()
            key = unique_key(sample_key(relative.rsplit(".", 1)[0]), relative, taken)
            try:
                if path.stat().st_size > data.max_bytes:  # don't read what won't be kept
                    detail = f"{path.stat().st_size} bytes > data.max_bytes {data.max_bytes}"
                    report.skip(key, "too_large", detail, path=relative)
                    continue
                video = path.read_bytes()
            except OSError as error:
                report.skip(key, "unreadable", f"{type(error).__name__}: {error}", path=relative)
                continue
            info = _admit(key, video, data, report, path=relative)
            if info is None:
                continue
            caption = captions.get(relative)
            uncaptioned += caption is None
            metadata = {
                "key": key,
                "source": "folder",
                "path": relative,
                "source_ext": path.suffix.lower().lstrip("."),
                "caption": caption or "",
                "bytes": len(video),
                "video": video_info_metadata(info),
            }
            report.wrote(sink, key, video, caption or "", metadata)
        # Caption rows naming no video file usually mean paths written differently.
        report.extra.update(uncaptioned=uncaptioned, captions_unmatched=len(set(captions) - listed))
        return report.finish(sink)
