"""Check the train/val split of the videos before any stage spends time on them.

The split is by a hash of each clip's key (:func:`fovea.data.split.split_of`), so with few
clips a split can come out empty or tiny by chance. The vae stage checks it first: an empty
split stops the run at once with the counts and the fix, instead of after the VAE fit; a val
split under :data:`MIN_VAL_CLIPS` clips gives a warning, and evaluate flags it
(:func:`small_val_split`), since an interval over so few clips says little.
"""

from __future__ import annotations

import re
import tarfile
from collections import Counter
from pathlib import Path

from fovea.data.split import split_of
from fovea.errors import FoveaUserError

__all__ = ["MIN_VAL_CLIPS", "SplitError", "check_split", "small_val_split", "split_counts", "video_keys"]

#: Fewer val clips than this: the ratio's interval is too wide (or degenerate) to compare heads.
MIN_VAL_CLIPS = 10

# WebDataset's grouping rule: a member's key is its path up to the first dot of its file name.
_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


class SplitError(FoveaUserError):
    """The videos yield no clip for one of the splits (or there are no videos)."""


def small_val_split(num_val_clips: int) -> bool:
    """Whether a val split of ``num_val_clips`` clips is too small to trust its interval."""
    return num_val_clips < MIN_VAL_CLIPS


def video_keys(videos_dir: Path) -> list[str]:
    """The sample keys of a videos-shard directory, in order, from the tar headers alone (no
    video is read, so this costs a moment even for large shards)."""
    shards = sorted(Path(videos_dir).glob("shard-*.tar"))
    if not shards:
        raise SplitError(f"no videos: {videos_dir} holds no shard-*.tar files (run the videos stage first)")
    keys: dict[str, None] = {}
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    match = _MEMBER.match(member.name)
                    if member.isfile() and match:
                        keys.setdefault(match.group(1))
        except (OSError, tarfile.TarError) as error:
            raise SplitError(f"cannot read {shard}: {error} (rerun the videos stage)") from None
    return list(keys)


def split_counts(keys: list[str], val_fraction: float) -> dict[str, int]:
    counts = Counter(split_of(key, val_fraction) for key in keys)
    return {"train": counts["train"], "val": counts["val"]}


def check_split(videos_dir: Path, val_fraction: float) -> tuple[dict[str, int], str | None]:
    """Count the clips of each split; stop if one is empty, warn if val is small.

    Returns:
        The counts per split and a warning to print (``None`` when val has enough clips).

    Raises:
        SplitError: no shards, or train or val gets no clip; the message gives the counts and
            the fix.
    """
    counts = split_counts(video_keys(videos_dir), val_fraction)
    total = counts["train"] + counts["val"]
    described = (
        f"{total} clips in {videos_dir} split by a hash of each key at data.val_fraction "
        f"{val_fraction}: train {counts['train']}, val {counts['val']}"
    )
    if counts["val"] == 0:
        raise SplitError(f"no clip falls in the val split ({described}); raise data.val_fraction or add clips")
    if counts["train"] == 0:
        raise SplitError(f"no clip falls in the train split ({described}); lower data.val_fraction or add clips")
    warning = None
    if small_val_split(counts["val"]):
        warning = (
            f"warning: only {counts['val']} val clips ({described}); intervals over fewer than "
            f"{MIN_VAL_CLIPS} clips are wide or degenerate: raise data.val_fraction or add clips"
        )
    return counts, warning
