"""The error every video source raises when its input is unusable."""

from __future__ import annotations

from fovea.errors import FoveaUserError

__all__ = ["VideoSourceError"]


class VideoSourceError(FoveaUserError, RuntimeError):
    """A source's input cannot be read, or nothing usable came out of it."""
