"""The ``shards`` source: copy existing WebDataset shards (video2dataset's layout) into ours."""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
from braceexpand import braceexpand
from tqdm import tqdm
from webdataset.tariterators import base_plus_ext, group_by_keys

from fovea.data.shards import ShardSink, sample_caption, sample_metadata, write_shards
from fovea.data.sources.admission import VIDEO_EXTENSIONS, admit, at_cap, video_info_metadata
from fovea.data.sources.keys import sample_key
from fovea.data.sources.registry import register_source
from fovea.data.sources.report import SourceReport
from fovea.params import DataParams

__all__ = ["SHARDS_SKIP_REASONS", "expand_shard_pattern", "write_shard_videos"]

#: Why a sample of existing shards is not copied.
SHARDS_SKIP_REASONS: tuple[str, ...] = (
    "unreadable_shard",  # a shard that cannot be opened or is a broken tar (counted once)
    "missing_video",  # a sample without a video member
    "too_large",  # over data.max_bytes
    "not_video",  # bytes PyAV cannot open as a video
    "corrupt",  # opens, but its first or last frames do not decode
    "duplicate_key",  # a key seen in an earlier sample (the first is kept)
)


# Files webdataset's reader skips as metadata (``__key__``-style names).
_TAR_META = re.compile(r"__[^/]*__($|/)")


def expand_shard_pattern(pattern: str) -> list[str]:
    """``dir/{00000..00002}.tar`` -> the three paths (several ``{a,b}`` groups allowed)."""
    return list(braceexpand(pattern))


def _open_shard(url: str, data: DataParams) -> Any:
    protocol = urlsplit(url).scheme.lower()
    if protocol in ("http", "https"):
        import aiohttp  # fsspec's HTTP backend; only needed for URLs

        # Stream (block_size 0): a tar is read front to back, and plain servers lack ranges.
        timeout = aiohttp.ClientTimeout(sock_connect=data.connect_timeout, sock_read=data.read_timeout)
        return fsspec.open(url, "rb", block_size=0, client_kwargs={"timeout": timeout})
    return fsspec.open(url, "rb")


def _tar_members(stream: Any, url: str) -> Iterator[dict[str, Any]]:
    """The regular files of a tar stream as WebDataset file dicts, for ``group_by_keys``.

    webdataset's own iterator drops the sample being grouped when the tar breaks, even when the
    break falls in the next sample's first file and that sample is complete. Here a file that
    cannot be read ends the previous sample first (an empty dict, ``group_by_keys``'s flush) when
    it starts a new key, then the error propagates: only the sample the break cuts through is
    lost.
    """
    archive = tarfile.open(fileobj=stream, mode="r|*")
    grouping: str | None = None  # the key of the sample group_by_keys holds
    for info in archive:  # a broken header raises here: the sample held may be incomplete
        if not info.isreg() or _TAR_META.match(info.name):
            continue
        key, _ = base_plus_ext(info.name)
        try:
            data = archive.extractfile(info).read()
        except Exception:
            if key != grouping:
                yield {}  # the sample held is complete: this file starts another
            raise
        archive.members = []  # a stream of thousands of files: keep no headers
        grouping = key if key is not None else grouping  # group_by_keys skips unkeyed files
        yield {"fname": info.name, "data": data, "__url__": url}


def _iter_shard(url: str, data: DataParams) -> Iterator[dict[str, Any]]:
    """The samples of one shard as WebDataset dicts (``__key__`` and bytes per extension)."""
    with _open_shard(url, data) as stream:
        yield from group_by_keys(_tar_members(stream, url))


def _video_member(sample: dict[str, Any]) -> tuple[str, bytes] | None:
    for extension in VIDEO_EXTENSIONS:
        if isinstance(sample.get(extension), bytes):
            return extension, sample[extension]
    return None


def _sample_caption(sample: dict[str, Any], metadata: dict[str, Any]) -> str:
    if "txt" in sample:
        return sample_caption(sample)
    # Some writers keep the caption only in the metadata (video2dataset has it in both).
    caption = metadata.get("caption")
    return caption if isinstance(caption, str) else ""


@register_source("shards", requires="shards")
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
    assert data.shards is not None  # the source's check requires it
    urls = expand_shard_pattern(data.shards)
    report = SourceReport("shards", data.shards, SHARDS_SKIP_REASONS)
    report.extra["shards_listed"] = len(urls)
    taken: set[str] = set()
    with write_shards(out_dir, data.clips_per_shard) as sink:
        progress = tqdm(desc="shards", unit="video")
        for url in urls:
            if at_cap(data, report):
                break
            with closing(_iter_shard(url, data)) as samples:
                while not at_cap(data, report):
                    try:
                        sample = next(samples, None)
                    except Exception as error:  # noqa: BLE001 - any read failure: skip the shard
                        # Samples complete before the damage are kept; the rest of the shard is lost.
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
    info = admit(key, video, data, report, shard=url)
    if info is None:
        return
    taken.add(key)
    metadata = sample_metadata(sample)
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
