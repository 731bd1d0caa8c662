"""The ``latents`` stage's library side: sample frames from every clip and cache VAE latents.

Bad videos are skipped and counted by reason, never fatal one by one; the run stops with a
:class:`LatentCacheError` when there are no shards, nothing usable is left, a split ends up
empty, or the encoder returns latents of the wrong shape or beyond float16's range.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fovea.data.shards import (
    SHARD_PATTERN,
    ShardSink,
    VideoSample,
    iter_video_samples,
    latent_sample_files,
    list_shards,
)
from fovea.data.split import Split, split_of
from fovea.data.video import ClipTooShortError, VideoDecodeError, load_clip
from fovea.io import atomic_directory

__all__ = [
    "SKIP_REASONS",
    "LatentCacheError",
    "cache_latents",
    "iter_training_frames",
]

#: Why a video can be skipped: no .mp4 member, fewer frames than requested, undecodable.
SKIP_REASONS: tuple[str, ...] = ("missing_video", "too_short", "corrupt")
SPLITS: tuple[Split, ...] = ("train", "val")
# How many skipped keys (with reasons) the manifest lists.
_MAX_SKIP_EXAMPLES = 20

Encoder = Callable[[np.ndarray], Any]


class LatentCacheError(RuntimeError):
    """The latents stage cannot produce usable output (no usable clips, an empty split, ...)."""


@dataclass(frozen=True)
class _Skip:
    key: str
    reason: str
    detail: str


@dataclass(frozen=True)
class _Kept:
    sample: VideoSample
    frames: np.ndarray  # uint8 [T, H, W, 3]
    indices: list[int]
    total_frames: int
    times: list[float] | None  # seconds after the first frame, when sampled at an fps


def _load(sample: VideoSample, num_frames: int, size: int, fps: float | None) -> _Kept | _Skip:
    if sample.mp4 is None:
        return _Skip(sample.key, "missing_video", "sample has no .mp4 member")
    try:
        clip = load_clip(sample.mp4, num_frames, size, fps=fps)
    except ClipTooShortError as error:
        return _Skip(sample.key, "too_short", str(error))
    except VideoDecodeError as error:
        return _Skip(sample.key, "corrupt", str(error))
    return _Kept(sample, clip.frames, clip.indices, clip.total_frames, clip.times)


def _iter_videos(videos_dir: Path) -> Iterator[VideoSample]:
    if not list_shards(videos_dir):
        raise LatentCacheError(f"no videos: {videos_dir} holds no shard-*.tar files")
    return iter_video_samples(videos_dir)


def _encode_batch(encode: Encoder, frames: np.ndarray) -> np.ndarray:
    """Run ``encode`` on [B, T, H, W, 3] frames and return float16 latents [B, T, C, h, w]."""
    batch, steps = frames.shape[:2]
    latents = encode(frames.reshape(batch * steps, *frames.shape[2:]))
    if hasattr(latents, "detach"):  # tolerate a torch tensor from the VAE wrapper
        latents = latents.detach().float().cpu().numpy()
    latents = np.asarray(latents)
    if latents.ndim != 4 or latents.shape[0] != batch * steps:
        raise LatentCacheError(
            f"encode returned shape {latents.shape} for {batch * steps} frames; "
            "expected [N, C, h, w]"
        )
    half = latents.astype(np.float16)
    if not np.isfinite(half).all():
        raise LatentCacheError(
            "encode returned non-finite latents or values beyond float16's range (|x| > 65504); "
            f"max |latent| = {np.nanmax(np.abs(latents.astype(np.float64)))}"
        )
    return half.reshape(batch, steps, *half.shape[1:])


class _LatentStats:
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
        return {"count": self.count,
                "total": None if self.total is None else self.total.tolist(),
                "total_sq": None if self.total_sq is None else self.total_sq.tolist()}

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
class _Part:
    """What one process cached: counts, skip examples, latent shape and statistics."""

    seen: int = 0
    kept: Counter = field(default_factory=lambda: Counter({split: 0 for split in SPLITS}))
    skipped: Counter = field(default_factory=lambda: Counter({reason: 0 for reason in SKIP_REASONS}))
    skip_examples: list[dict[str, str]] = field(default_factory=list)
    latents_shape: tuple[int, ...] | None = None
    stats: _LatentStats = field(default_factory=_LatentStats)

    def to_json(self) -> dict[str, Any]:
        return {"seen": self.seen, "kept": dict(self.kept), "skipped": dict(self.skipped),
                "skip_examples": self.skip_examples, "latents_shape": self.latents_shape,
                "stats": self.stats.to_json()}

    def merge(self, other: dict[str, Any]) -> None:
        self.seen += other["seen"]
        self.kept.update(other["kept"])
        self.skipped.update(other["skipped"])
        room = _MAX_SKIP_EXAMPLES - len(self.skip_examples)
        self.skip_examples.extend(other["skip_examples"][:room])
        shape = tuple(other["latents_shape"]) if other["latents_shape"] else None
        if shape and self.latents_shape and shape != self.latents_shape:
            raise LatentCacheError(f"latent shapes differ between processes: {self.latents_shape} vs {shape}")
        self.latents_shape = self.latents_shape or shape
        self.stats.merge(other["stats"])


class _DecodedVideos(torch.utils.data.IterableDataset):
    """Decoded clips (or skip records) of this process's share of the videos.

    Sample ``i`` belongs to process ``i % world_size``; within a process, DataLoader workers
    split its share again, so every clip is decoded exactly once across all of them.
    """

    def __init__(self, videos_dir: Path, num_frames: int, size: int, fps: float | None, rank: int,
                 world_size: int) -> None:
        super().__init__()
        self.videos_dir, self.num_frames, self.size, self.fps = videos_dir, num_frames, size, fps
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[_Kept | _Skip]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        for index, sample in enumerate(_iter_videos(self.videos_dir)):
            if index % self.world_size != self.rank:
                continue
            if (index // self.world_size) % workers != worker:
                continue
            yield _load(sample, self.num_frames, self.size, self.fps)


def _unbatched(outcome: _Kept | _Skip) -> _Kept | _Skip:
    return outcome


def _cache_part(
    videos_dir: Path, part_dir: Path, encode: Encoder, num_frames: int, size: int, val_fraction: float,
    clips_per_shard: int, batch_size: int, fps: float | None, rank: int, world_size: int, num_workers: int,
) -> _Part:
    """Decode (in ``num_workers`` processes), encode in batches and write this process's shards."""
    part = _Part()
    sinks = {}
    for split in SPLITS:
        (part_dir / split).mkdir(parents=True)
        sinks[split] = ShardSink(part_dir / split, clips_per_shard)
    pending: list[_Kept] = []
    # Shards are written on a thread while the next batch is decoded and encoded; one batch in
    # flight at most, so memory stays bounded and the writer's errors surface at the next batch.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"latents-writer-{rank}")
    writing: Future | None = None

    def write(clips: list[_Kept], latents: np.ndarray) -> None:
        for clip, clip_latents in zip(clips, latents, strict=True):
            split = split_of(clip.sample.key, val_fraction)
            metadata = {
                **clip.sample.metadata,
                "key": clip.sample.key,
                "split": split,
                "frame_indices": clip.indices,
                "source_total_frames": clip.total_frames,
            }
            if clip.times is not None:
                metadata["frame_times"] = clip.times
            sinks[split].write(clip.sample.key, latent_sample_files(clip.frames, clip_latents, clip.sample.caption,
                                                                    metadata))
            part.kept[split] += 1

    def flush() -> None:
        nonlocal writing
        if not pending:
            return
        latents = _encode_batch(encode, np.stack([clip.frames for clip in pending]))
        if part.latents_shape is None:
            part.latents_shape = tuple(latents.shape[1:])
        elif tuple(latents.shape[1:]) != part.latents_shape:
            raise LatentCacheError(f"latent shape changed from {part.latents_shape} to {latents.shape[1:]}")
        part.stats.add(latents)
        if writing is not None:
            writing.result()
        writing = writer.submit(write, list(pending), latents)
        pending.clear()

    decoded = torch.utils.data.DataLoader(
        _DecodedVideos(videos_dir, num_frames, size, fps, rank, world_size),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_unbatched,
        prefetch_factor=2 * batch_size if num_workers > 0 else None,
    )
    try:
        for outcome in tqdm(decoded, desc=f"latents (process {rank})", unit="clip", position=rank):
            part.seen += 1
            if isinstance(outcome, _Skip):
                part.skipped[outcome.reason] += 1
                if len(part.skip_examples) < _MAX_SKIP_EXAMPLES:
                    part.skip_examples.append({"key": outcome.key, "reason": outcome.reason, "detail": outcome.detail})
                continue
            pending.append(outcome)
            if len(pending) >= batch_size:
                flush()
        flush()
        if writing is not None:
            writing.result()
    finally:
        writer.shutdown(wait=True)
        for sink in sinks.values():
            sink.close()
    return part


def cache_latents(
    videos_dir: Path,
    out_dir: Path,
    encode: Callable[[np.ndarray], np.ndarray],
    num_frames: int,
    size: int,
    val_fraction: float,
    clips_per_shard: int,
    batch_size: int = 8,
    *,
    fps: float | None = None,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
) -> dict[str, Any] | None:
    """Sample frames from every video, encode them, and write latents shards per split.

    Writes ``out_dir/train/shard-*.tar``, ``out_dir/val/shard-*.tar`` (frames uint8
    [T, size, size, 3], latents float16 [T, C, h, w], caption, metadata with the split and the
    sampled frame indices) and ``out_dir/manifest.json``; ``out_dir`` is replaced only when all
    of it is complete.

    Args:
        videos_dir: directory of videos shards (``{key}.mp4/.txt/.json``).
        out_dir: where the latents go.
        encode: frames uint8 [N, H, W, 3] -> latents [N, C, h, w] (already multiplied by the
            VAE's scaling factor); float16 must hold them.
        num_frames: frames sampled from each clip: at a constant stride, or at ``fps``.
        size: square crop side.
        val_fraction: share of keys (by hash) that go to val.
        clips_per_shard: samples per output shard.
        batch_size: clips per ``encode`` call (``batch_size * num_frames`` frames).
        fps: sample the frames at this rate from the clip's start (by timestamp) instead of
            at a constant stride over the clip; a clip shorter than ``(num_frames - 1) / fps`` seconds is
            skipped as too short.
        num_workers: DataLoader worker processes that decode videos while this one encodes.
        rank, world_size, barrier: for several processes (``accelerate launch``): each caches
            the videos ``i`` with ``i % world_size == rank``, then process 0 gathers every
            part into ``out_dir``. ``barrier`` waits for all processes.

    Returns:
        The manifest (on process 0; ``None`` on the others): kept per split, skipped per reason
        with the first few keys, shapes, shard counts and latent statistics.

    Raises:
        LatentCacheError: no shards, nothing usable, an empty split, or bad ``encode`` output.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if world_size > 1 and barrier is None:
        raise ValueError("several processes need a barrier")
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    settings = dict(num_frames=num_frames, size=size, val_fraction=val_fraction, clips_per_shard=clips_per_shard,
                    batch_size=batch_size, fps=fps, num_workers=num_workers)

    if world_size == 1:
        with atomic_directory(out_dir) as temp_dir:
            part = _cache_part(videos_dir, temp_dir, encode, rank=0, world_size=1, **settings)
            return _finish(part, temp_dir, videos_dir, settings)

    # Several processes: each writes a part next to out_dir, process 0 gathers them.
    parts_root = out_dir.with_name(f".{out_dir.name}.parts")
    if rank == 0:
        shutil.rmtree(parts_root, ignore_errors=True)
        parts_root.mkdir(parents=True)
    barrier()
    part_dir = parts_root / f"rank-{rank}"
    part = _cache_part(videos_dir, part_dir, encode, rank=rank, world_size=world_size, **settings)
    (part_dir / "part.json").write_text(json.dumps(part.to_json()))
    barrier()
    if rank != 0:
        return None
    merged = _Part()
    with atomic_directory(out_dir) as temp_dir:
        numbers = dict.fromkeys(SPLITS, 0)
        for split in SPLITS:
            (temp_dir / split).mkdir()
        for other in range(world_size):
            other_dir = parts_root / f"rank-{other}"
            merged.merge(json.loads((other_dir / "part.json").read_text()))
            for split in SPLITS:
                for shard in list_shards(other_dir / split):
                    shard.rename(temp_dir / split / (SHARD_PATTERN % numbers[split]))
                    numbers[split] += 1
        manifest = _finish(merged, temp_dir, videos_dir, settings, processes=world_size)
    shutil.rmtree(parts_root, ignore_errors=True)
    return manifest


def _finish(part: _Part, temp_dir: Path, videos_dir: Path, settings: dict[str, Any], processes: int = 1) -> dict:
    """Check that both splits have clips and write the manifest."""
    kept, skipped = part.kept, part.skipped
    skip_summary = ", ".join(f"{reason}: {count}" for reason, count in skipped.items())
    if sum(kept.values()) == 0:
        raise LatentCacheError(f"no usable clips in {videos_dir}: {part.seen} seen, all skipped ({skip_summary})")
    empty = [split for split in SPLITS if kept[split] == 0]
    if empty:
        raise LatentCacheError(
            f"split {' and '.join(empty)} is empty (train: {kept['train']}, "
            f"val: {kept['val']} kept of {part.seen} seen; skipped {skip_summary}); training needs "
            f"train and evaluation needs val: add clips or change val_fraction ({settings['val_fraction']})"
        )
    num_frames, size = settings["num_frames"], settings["size"]
    manifest: dict[str, Any] = {
        "videos_dir": str(videos_dir),
        "num_frames": num_frames,
        "fps": settings["fps"],
        "size": size,
        "val_fraction": settings["val_fraction"],
        "processes": processes,
        "seen": part.seen,
        "kept": {**{split: kept[split] for split in SPLITS}, "total": sum(kept.values())},
        "skipped": dict(skipped),
        "skipped_total": sum(skipped.values()),
        "skipped_examples": part.skip_examples,
        "frames_shape": [num_frames, size, size, 3],
        "frames_dtype": "uint8",
        "latents_shape": list(part.latents_shape or ()),
        "latents_dtype": "float16",
        "latents_stats": part.stats.summary(),
        "shards": {split: len(list_shards(temp_dir / split)) for split in SPLITS},
    }
    (temp_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def iter_training_frames(
    videos_dir: Path,
    num_frames: int,
    size: int,
    val_fraction: float,
    limit: int | None = None,
    split: str = "train",
    *,
    fps: float | None = None,
) -> np.ndarray:
    """Sampled frames of one split's clips (train: fitting the tiny VAE; val: checking it).

    Reads clips in shard order, samples ``num_frames`` frames per clip exactly as
    :func:`cache_latents` does, and skips bad videos silently (``cache_latents`` counts them).

    Args:
        limit: stop once this many frames are collected (``None``: all train clips).
        fps: sample at this rate from each clip's start, as :func:`cache_latents` does.

    Returns:
        uint8 array [N, size, size, 3] with N <= ``limit``.

    Raises:
        LatentCacheError: no train clip could be read.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    chunks: list[np.ndarray] = []
    collected = 0
    progress = tqdm(_iter_videos(Path(videos_dir)), desc="training frames", unit="clip")
    for sample in progress:
        if split_of(sample.key, val_fraction) != split:
            continue
        outcome = _load(sample, num_frames, size, fps)
        if isinstance(outcome, _Skip):
            continue
        chunks.append(outcome.frames)
        collected += len(outcome.frames)
        if limit is not None and collected >= limit:
            break
    progress.close()
    if not chunks:
        raise LatentCacheError(f"no decodable {split}-split clips in {videos_dir}")
    frames = np.concatenate(chunks)
    return frames[:limit] if limit is not None else frames
