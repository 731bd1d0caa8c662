"""Name -> video source.

A source is a function ``write(data: DataParams, out_dir: Path) -> dict`` that writes the
videos shards at ``out_dir`` (replaced only when complete) and returns its summary. It
registers with ``@register_source(name, requires=...)``: ``requires`` names the ``data.*``
param that holds its input, and ``check`` validates the params it reads; both run when
``params.yaml`` is read, so a bad value stops every stage before it works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fovea.params import DataParams

__all__ = ["VideoSource", "register_source", "source_names", "video_source"]

Writer = Callable[["DataParams", Path], dict[str, Any]]
Checker = Callable[["DataParams"], None]


@dataclass(frozen=True)
class VideoSource:
    name: str
    write: Writer
    requires: str | None = None  # the data.* param naming the source's input
    check_params: Checker | None = None  # raises ValueError naming the bad data.* key

    def check(self, data: DataParams) -> None:
        """Raise ``ValueError`` (message starting with the key) if ``data`` does not suit this source."""
        if self.requires is not None and getattr(data, self.requires) is None:
            raise ValueError(f"data.{self.requires}: required when data.source is {self.name!r}")
        if self.check_params is not None:
            self.check_params(data)


_SOURCES: dict[str, VideoSource] = {}


def register_source(
    name: str, *, requires: str | None = None, check: Checker | None = None
) -> Callable[[Writer], Writer]:
    def decorate(write: Writer) -> Writer:
        if name in _SOURCES and _SOURCES[name].write is not write:
            raise ValueError(f"source {name!r} is registered twice")
        _SOURCES[name] = VideoSource(name, write, requires, check)
        return write

    return decorate


def source_names() -> list[str]:
    return sorted(_SOURCES)


def video_source(name: str) -> VideoSource:
    try:
        return _SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r}; valid sources: {', '.join(source_names())}") from None
