"""The latents stage's ``manifest.json``: what it counted while caching (merged across
processes), the shapes and latent statistics, and the checks that the result is usable."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fovea.data.shards import VIDEOS_REPORT_NAME, list_shards
from fovea.errors import FoveaUserError

if TYPE_CHECKING:
    from fovea.data.latents import LatentSettings

__all__ = ["SKIP_REASONS", "SPLITS", "CachePart", "LatentCacheError", "LatentStats", "write_manifest"]

#: Why a video can be skipped: no .mp4 member, fewer frames than requested, undecodable.
SKIP_REASONS: tuple[str, ...] = ("missing_video", "too_short", "corrupt")
SPLITS: tuple[str, ...] = ("train", "val")
# How many skipped keys (with reasons) the manifest lists.
MAX_SKIP_EXAMPLES = 20


class LatentCacheError(FoveaUserError, RuntimeError):
    """The latents stage cannot produce usable output (no usable clips, an empty split, ...)."""


class LatentStats:
    """Running per-channel mean and std of the stored (float16) latents, for the manifest."""

    def __init__(self) -> None:
        self.count = 0
        self.total: np.ndarray | None = None
        self.total_sq: np.ndarray | None = None

    def add(self, latents: np.ndarray) -> None:
        values = latents.astype(np.float64)
        channel_axis = values.ndim - 3  # [..., C, h, w]
        axes = tuple(i for i in range(values.ndim) if i != channel_axis)
        total, total_sq = values.sum(axis=axes), (values**2).sum(axis=axes)
        self.total = total if self.total is None else self.total + total
        self.total_sq = total_sq if self.total_sq is None else self.total_sq + total_sq
        self.count += values.size // values.shape[channel_axis]

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "total": None if self.total is None else self.total.tolist(),
            "total_sq": None if self.total_sq is None else self.total_sq.tolist(),
        }

    def merge(self, other: dict[str, Any]) -> None:
        if other["total"] is None:
            return
        total, total_sq = np.asarray(other["total"]), np.asarray(other["total_sq"])
        self.total = total if self.total is None else self.total + total
        self.total_sq = total_sq if self.total_sq is None else self.total_sq + total_sq
        self.count += other["count"]

    def summary(self) -> dict[str, Any]:
        if self.total is None or self.total_sq is None:
            return {}
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.total_sq / self.count - mean**2, 0.0))
        overall_mean = float(self.total.sum() / (self.count * len(mean)))
        overall_var = float(self.total_sq.sum() / (self.count * len(mean))) - overall_mean**2
        return {
            "mean": round(overall_mean, 6),
            "std": round(float(np.sqrt(max(overall_var, 0.0))), 6),
            "channel_mean": [round(float(v), 6) for v in mean],
            "channel_std": [round(float(v), 6) for v in std],
        }


@dataclass
class CachePart:
    """What one process cached: counts, skip examples, latent shape and statistics."""

    seen: int = 0
    kept: Counter = field(default_factory=lambda: Counter({split: 0 for split in SPLITS}))
    skipped: Counter = field(default_factory=lambda: Counter({reason: 0 for reason in SKIP_REASONS}))
    skip_examples: list[dict[str, str]] = field(default_factory=list)
    latents_shape: tuple[int, ...] | None = None
    stats: LatentStats = field(default_factory=LatentStats)

    def to_json(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "kept": dict(self.kept),
            "skipped": dict(self.skipped),
            "skip_examples": self.skip_examples,
            "latents_shape": self.latents_shape,
            "stats": self.stats.to_json(),
        }

    def merge(self, other: dict[str, Any]) -> None:
        self.seen += other["seen"]
        self.kept.update(other["kept"])
        self.skipped.update(other["skipped"])
        room = MAX_SKIP_EXAMPLES - len(self.skip_examples)
        self.skip_examples.extend(other["skip_examples"][:room])
        shape = tuple(other["latents_shape"]) if other["latents_shape"] else None
        if shape and self.latents_shape and shape != self.latents_shape:
            raise LatentCacheError(f"latent shapes differ between processes: {self.latents_shape} vs {shape}")
        self.latents_shape = self.latents_shape or shape
        self.stats.merge(other["stats"])


def videos_report(videos_dir: Path) -> dict[str, Any] | None:
    """What the videos stage skipped before this one saw the clips (its ``report.json``), so the
    manifest is the one place to read every skip; ``None`` for sources that write no report."""
    path = Path(videos_dir) / VIDEOS_REPORT_NAME
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    return {
        "path": str(path),
        "written": report.get("written"),
        "skipped": report.get("skipped", {}),
        "skipped_total": report.get("skipped_total", 0),
    }


def write_manifest(
    part: CachePart, temp_dir: Path, videos_dir: Path, settings: LatentSettings, processes: int = 1
) -> dict:
    """Check that both splits have clips and write the manifest."""
    kept, skipped = part.kept, part.skipped
    skip_summary = ", ".join(f"{reason}: {count}" for reason, count in skipped.items())
    earlier = videos_report(videos_dir)
    if earlier is not None and earlier["skipped_total"]:
        skip_summary += f"; {earlier['skipped_total']} skipped earlier, see {earlier['path']}"
    if sum(kept.values()) == 0:
        raise LatentCacheError(f"no usable clips in {videos_dir}: {part.seen} seen, all skipped ({skip_summary})")
    empty = [split for split in SPLITS if kept[split] == 0]
    if empty:
        raise LatentCacheError(
            f"split {' and '.join(empty)} is empty (train: {kept['train']}, "
            f"val: {kept['val']} kept of {part.seen} seen; skipped {skip_summary}); training needs "
            f"train and evaluation needs val: add clips or change val_fraction ({settings.val_fraction})"
        )
    num_frames, size = settings.num_frames, settings.size
    manifest: dict[str, Any] = {
        "videos_dir": str(videos_dir),
        "num_frames": num_frames,
        "fps": settings.fps,
        "size": size,
        "val_fraction": settings.val_fraction,
        "processes": processes,
        "seen": part.seen,
        "kept": {**{split: kept[split] for split in SPLITS}, "total": sum(kept.values())},
        "skipped": dict(skipped),
        "skipped_total": sum(skipped.values()),
        "skipped_examples": part.skip_examples,
        # Videos skipped before this stage (not admitted by the videos stage), by reason.
        "videos_report": earlier,
        "frames_shape": [num_frames, size, size, 3],
        "frames_dtype": "uint8",
        "latents_shape": list(part.latents_shape or ()),
        "latents_dtype": "float16",
        "latents_stats": part.stats.summary(),
        "shards": {split: len(list_shards(temp_dir / split)) for split in SPLITS},
    }
    (temp_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
