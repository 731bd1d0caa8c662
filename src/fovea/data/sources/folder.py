"""The ``folder`` source: a directory of video files, with optional captions from a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from fovea.data.shards import write_shards
from fovea.data.sources.admission import VIDEO_EXTENSIONS, admit, at_cap, video_info_metadata
from fovea.data.sources.errors import VideoSourceError
from fovea.data.sources.keys import sample_key, unique_key
from fovea.data.sources.registry import register_source
from fovea.data.sources.report import SourceReport
from fovea.params import DataParams

__all__ = ["FOLDER_SKIP_REASONS", "write_folder_videos"]

#: Why a file of a video folder is not copied.
FOLDER_SKIP_REASONS: tuple[str, ...] = ("unreadable", "too_large", "not_video", "corrupt")


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
        (path for path in root.rglob("*") if path.is_file() and path.suffix.lower().lstrip(".") in VIDEO_EXTENSIONS),
        key=lambda path: path.relative_to(root).as_posix(),
    )


@register_source("folder", requires="folder")
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
    assert data.folder is not None  # the source's check requires it
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
            if at_cap(data, report):
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
            info = admit(key, video, data, report, path=relative)
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
