"""The error every video source raises when its input is unusable."""

from __future__ import annotations

__all__ = ["VideoSourceError"]


class VideoSourceError(RuntimeError):
    """A source's input cannot be read, or nothing usable came out of it."""
