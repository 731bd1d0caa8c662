"""Sample keys for the videos shards: safe for WebDataset, stable, and unique within a run."""

from __future__ import annotations

import hashlib
import re

__all__ = ["sample_key", "unique_key"]


def sample_key(text: str) -> str:
    """A WebDataset-safe key from an id or a relative path: ``a/b.c.mp4`` -> ``a_b_c_mp4``.

    WebDataset groups tar members by the name up to the first dot, so keys hold only letters,
    digits, ``-`` and ``_``, and never start with ``_`` (reserved for ``__key__`` and kin).
    """
    key = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return key or "video"


def unique_key(key: str, origin: str, taken: set[str]) -> str:
    """``key``, or ``key-<hash of origin>`` when ``key`` is already taken; adds it to ``taken``.

    Two different inputs can sanitise to the same key (``a/b.mp4`` and ``a_b.mp4``); a suffix
    derived from the original name keeps both, and the same inputs always get the same keys.
    """
    if key in taken:
        key = f"{key}-{hashlib.sha1(origin.encode('utf-8')).hexdigest()[:8]}"
    taken.add(key)
    return key
