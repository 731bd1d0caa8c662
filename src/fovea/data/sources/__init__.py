"""The ``videos`` stage's sources, one module each, and :func:`write_videos`, which runs the one
``data.source`` names.

- ``synthetic``: rendered clips (:mod:`.synthetic`);
- ``webvid``: a WebVid-format list, downloaded (:mod:`.webvid`: listing, download, cache);
- ``shards``: existing WebDataset shards, such as video2dataset writes (:mod:`.shards`);
- ``folder``: a directory of video files with optional captions (:mod:`.folder`).

Every module of this package is imported, so a source registers itself with
``@register_source`` (:mod:`.registry`) and needs no other change to be selectable; what real
sources share lives in :mod:`.admission`, :mod:`.keys`, :mod:`.report` and :mod:`.errors`.

Every source writes the same layout: ``{key}.mp4``, ``{key}.txt`` (caption), ``{key}.json``
(metadata). Videos are never transcoded: a WebM, Matroska, AVI or QuickTime file is stored as
is under ``{key}.mp4`` (PyAV recognises the container from its bytes, not its name) and its
original extension is kept in the metadata as ``source_ext``. Real sources also write
``report.json`` (what was skipped and why) beside the shards.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from fovea.data.sources.errors import VideoSourceError
from fovea.data.sources.registry import register_source, source_names, video_source
from fovea.params import DataParams

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["VideoSourceError", "register_source", "source_names", "video_source", "write_videos"]


def write_videos(data: DataParams, out_dir: Path) -> dict[str, Any]:
    """Write the videos of ``data.source`` as shards at ``out_dir`` (replaced when complete).

    Returns:
        The source's summary (real sources: the report also written to ``report.json``).

    Raises:
        VideoSourceError: the source's input is unreadable or yields no usable video.
    """
    return video_source(data.source).write(data, Path(out_dir))
