"""The ``latents`` stage's library side: sample frames from every clip and cache VAE latents.

Bad videos are skipped and counted by reason, never fatal one by one; the run stops with a
:class:`LatentCacheError` when there are no shards, nothing usable is left, a split ends up
empty, or the encoder returns latents of the wrong shape or beyond float16's range.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from fovea.data.decode import ClipTooShortError, VideoDecodeError, load_clip
from fovea.data.manifest import (
    MAX_SKIP_EXAMPLES,
    SKIP_REASONS,
    SPLITS,
    CachePart,
    LatentCacheError,
    write_manifest,
)
from fovea.data.shards import (
    SHARD_PATTERN,
    ShardSink,
    VideoSample,
    iter_video_samples,
    latent_sample_files,
    list_shards,
)
from fovea.data.split import split_of
from fovea.io import atomic_directory

if TYPE_CHECKING:
    from fovea.params import Params

__all__ = [
    "SKIP_REASONS",
    "LatentCacheError",
    "LatentSettings",
    "Processes",
    "cache_latents",
    "iter_training_frames",
]


Encoder = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class LatentSettings:
    """How clips become latents shards.

    Attributes:
        num_frames: frames sampled from each clip: at a constant stride, or at ``fps``.
        size: square crop side.
        val_fraction: share of keys (by hash) that go to val.
        clips_per_shard: samples per output shard.
        fps: sample the frames at this rate from the clip's start (by timestamp) instead of at
            a constant stride over the clip; a clip shorter than ``(num_frames - 1) / fps``
            seconds is skipped as too short.
        batch_size: clips per ``encode`` call (``batch_size * num_frames`` frames).
        num_workers: DataLoader worker processes that decode videos while this one encodes.
    """

    num_frames: int
    size: int
    val_fraction: float
    clips_per_shard: int = 100
    fps: float | None = None
    batch_size: int = 8
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def from_params(cls, params: Params) -> LatentSettings:
        return cls(
            num_frames=params.frames.num,
            size=params.frames.size,
            val_fraction=params.data.val_fraction,
            clips_per_shard=params.data.clips_per_shard,
            fps=params.frames.fps,
            num_workers=params.compute.num_workers,
        )


@dataclass(frozen=True)
class Processes:
    """This process's place among several (``accelerate launch``); ``barrier`` waits for all."""

    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.world_size > 1 and self.barrier is None:
            raise ValueError("several processes need a barrier")


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


def _load(sample: VideoSample, settings: LatentSettings) -> _Kept | _Skip:
    if sample.mp4 is None:
        return _Skip(sample.key, "missing_video", "sample has no .mp4 member")
    try:
        clip = load_clip(sample.mp4, settings.num_frames, settings.size, fps=settings.fps)
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
    latents = np.asarray(latents)
    if latents.ndim != 4 or latents.shape[0] != batch * steps:
        raise LatentCacheError(
            f"encode returned shape {latents.shape} for {batch * steps} frames; expected [N, C, h, w]"
        )
    half = latents.astype(np.float16)
    if not np.isfinite(half).all():
        raise LatentCacheError(
            "encode returned non-finite latents or values beyond float16's range (|x| > 65504); "
            f"max |latent| = {np.nanmax(np.abs(latents.astype(np.float64)))}"
        )
    return half.reshape(batch, steps, *half.shape[1:])


class _DecodedVideos(torch.utils.data.IterableDataset):
    """Decoded clips (or skip records) of this process's share of the videos.

    Sample ``i`` belongs to process ``i % world_size``; within a process, DataLoader workers
    split its share again, so every clip is decoded exactly once across all of them.
    """

    def __init__(self, videos_dir: Path, settings: LatentSettings, processes: Processes) -> None:
        super().__init__()
        self.videos_dir, self.settings = videos_dir, settings
        self.rank, self.world_size = processes.rank, processes.world_size

    def __iter__(self) -> Iterator[_Kept | _Skip]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        for index, sample in enumerate(_iter_videos(self.videos_dir)):
            if index % self.world_size != self.rank:
                continue
            if (index // self.world_size) % workers != worker:
                continue
            yield _load(sample, self.settings)


def _unbatched(outcome: _Kept | _Skip) -> _Kept | _Skip:
    return outcome


def _cache_part(
    videos_dir: Path, part_dir: Path, encode: Encoder, settings: LatentSettings, processes: Processes
) -> CachePart:
    """Decode (in ``num_workers`` processes), encode in batches and write this process's shards."""
    part = CachePart()
    rank = processes.rank
    sinks = {}
    for split in SPLITS:
        (part_dir / split).mkdir(parents=True)
        sinks[split] = ShardSink(part_dir / split, settings.clips_per_shard)
    pending: list[_Kept] = []
    # Shards are written on a thread while the next batch is decoded and encoded; one batch in
    # flight at most, so memory stays bounded and the writer's errors surface at the next batch.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"latents-writer-{rank}")
    writing: Future | None = None

    def write(clips: list[_Kept], latents: np.ndarray) -> None:
        for clip, clip_latents in zip(clips, latents, strict=True):
            split = split_of(clip.sample.key, settings.val_fraction)
            metadata = {
                **clip.sample.metadata,
                "key": clip.sample.key,
                "split": split,
                "frame_indices": clip.indices,
                "source_total_frames": clip.total_frames,
            }
            if clip.times is not None:
                metadata["frame_times"] = clip.times
            sinks[split].write(
                clip.sample.key, latent_sample_files(clip.frames, clip_latents, clip.sample.caption, metadata)
            )
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
        _DecodedVideos(videos_dir, settings, processes),
        batch_size=None,
        num_workers=settings.num_workers,
        collate_fn=_unbatched,
        prefetch_factor=2 * settings.batch_size if settings.num_workers > 0 else None,
    )
    try:
        for outcome in tqdm(decoded, desc=f"latents (process {rank})", unit="clip", position=rank):
            part.seen += 1
            if isinstance(outcome, _Skip):
                part.skipped[outcome.reason] += 1
                if len(part.skip_examples) < MAX_SKIP_EXAMPLES:
                    part.skip_examples.append({"key": outcome.key, "reason": outcome.reason, "detail": outcome.detail})
                continue
            pending.append(outcome)
            if len(pending) >= settings.batch_size:
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
    *,
    videos_dir: Path,
    out_dir: Path,
    encode: Callable[[np.ndarray], np.ndarray],
    settings: LatentSettings,
    processes: Processes = Processes(),
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
        settings: the frames sampled, the split and the batching.
        processes: for several processes (``accelerate launch``): each caches the videos ``i``
            with ``i % world_size == rank``, then process 0 gathers every part into ``out_dir``.

    Returns:
        The manifest (on process 0; ``None`` on the others): kept per split, skipped per reason
        with the first few keys, shapes, shard counts and latent statistics.

    Raises:
        LatentCacheError: no shards, nothing usable, an empty split, or bad ``encode`` output.
    """
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    rank, world_size, barrier = processes.rank, processes.world_size, processes.barrier
    if world_size == 1:
        with atomic_directory(out_dir) as temp_dir:
            part = _cache_part(videos_dir, temp_dir, encode, settings, processes)
            return write_manifest(part, temp_dir, videos_dir, settings)

    # Several processes: each writes a part next to out_dir, process 0 gathers them.
    parts_root = out_dir.with_name(f".{out_dir.name}.parts")
    if rank == 0:
        shutil.rmtree(parts_root, ignore_errors=True)
        parts_root.mkdir(parents=True)
    barrier()
    part_dir = parts_root / f"rank-{rank}"
    part = _cache_part(videos_dir, part_dir, encode, settings, processes)
    (part_dir / "part.json").write_text(json.dumps(part.to_json()))
    barrier()
    if rank != 0:
        return None
    merged = CachePart()
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
        manifest = write_manifest(merged, temp_dir, videos_dir, settings, processes=world_size)
    shutil.rmtree(parts_root, ignore_errors=True)
    return manifest


def iter_training_frames(
    videos_dir: Path,
    *,
    settings: LatentSettings,
    split: str = "train",
    limit: int | None = None,
) -> np.ndarray:
    """Sampled frames of one split's clips (train: fitting the tiny VAE; val: checking it).

    Reads clips in shard order, samples ``num_frames`` frames per clip exactly as
    :func:`cache_latents` does, and skips bad videos silently (``cache_latents`` counts them).

    Args:
        settings: the frames sampled and the split, as for :func:`cache_latents`.
        limit: stop once this many frames are collected (``None``: all of the split's clips).

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
        if split_of(sample.key, settings.val_fraction) != split:
            continue
        outcome = _load(sample, settings)
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
