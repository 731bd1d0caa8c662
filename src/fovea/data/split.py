"""Train/val split by a stable hash of the video key.

The split depends on the key alone, so it is the same across reruns, machines, Python versions
(unlike the salted built-in ``hash``) and data sources, and adding clips never moves old ones.
"""

from __future__ import annotations

import hashlib
from typing import Literal

__all__ = ["Split", "split_of"]

Split = Literal["train", "val"]


def split_of(key: str, val_fraction: float) -> Split:
    """``"val"`` for about ``val_fraction`` of all keys, ``"train"`` for the rest."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    # The first 8 bytes as a uniform number in [0, 1).
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "val" if position < val_fraction else "train"
