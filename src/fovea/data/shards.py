"""WebDataset tar shards: writing them safely and reading them back.

Two layouts share the same machinery:

- videos shards (video2dataset's layout): ``{key}.mp4``, ``{key}.txt`` (caption),
  ``{key}.json`` (metadata);
- latents shards: ``{key}.frames.npy`` uint8 [T, H, W, 3], ``{key}.latents.npy`` float16
  [T, C, h, w], ``{key}.txt``, ``{key}.json``.

Shards are named ``shard-000000.tar``, ``shard-000001.tar``, ... and read in sorted order.
Output directories are written under a temporary name and renamed only when complete, so a
failed run never leaves a half-written directory where a good one used to be.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds

from fovea.io import atomic_directory

__all__ = [
    "SHARD_GLOB",
    "SHARD_PATTERN",
    "VIDEOS_REPORT_NAME",
    "LatentSample",
    "ShardSink",
    "VideoSample",
    "decode_npy",
    "encode_npy",
    "iter_latent_samples",
    "iter_samples",
    "iter_video_samples",
    "latent_sample_files",
    "latents_eval_dataset",
    "latents_train_dataset",
    "list_shards",
    "sample_caption",
    "sample_metadata",
    "video_sample_files",
    "write_shards",
]

SHARD_PATTERN = "shard-%06d.tar"
SHARD_GLOB = "shard-*.tar"
#: What a real video source skipped and why, beside its shards (the latents manifest links it).
VIDEOS_REPORT_NAME = "report.json"

# A fixed mtime inside the tars makes shards byte-identical across reruns (stable DVC hashes).
# An int, not a float: tarfile stores a float mtime in an extra pax header before every member,
# which doubled the header parsing on every read of the shards.
_TAR_MTIME = 0


# --------------------------------------------------------------------------- writing


def _check_key(key: str) -> None:
    # WebDataset groups tar members into samples by the basename up to the first dot, so a
    # key with a dot or slash would be split into wrong samples on reading.
    if not key or "." in key or "/" in key or key.startswith("_"):
        raise ValueError(f"invalid sample key {key!r}: must be non-empty, without '.', '/' or leading '_'")


class ShardSink:
    """Writes samples into ``shard-%06d.tar`` files in an existing directory.

    A thin wrapper over ``webdataset.ShardWriter`` that opens the first shard only when the
    first sample arrives (so writing nothing leaves no empty tar) and checks keys.
    """

    def __init__(self, directory: Path, max_per_shard: int) -> None:
        if max_per_shard < 1:
            raise ValueError(f"max_per_shard must be >= 1, got {max_per_shard}")
        self.directory = Path(directory)
        self.max_per_shard = max_per_shard
        self.count = 0
        self._writer: wds.ShardWriter | None = None

    def write(self, key: str, files: Mapping[str, bytes]) -> None:
        """Add one sample: ``files`` maps an extension (``"mp4"``, ``"frames.npy"``) to bytes."""
        _check_key(key)
        if self._writer is None:
            self._writer = wds.ShardWriter(
                str(self.directory / SHARD_PATTERN),
                maxcount=self.max_per_shard,
                verbose=0,
                encoder=False,  # values are already bytes; no guessing from extensions
                mtime=_TAR_MTIME,
            )
        self._writer.write({"__key__": key, **files})
        self.count += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def shards(self) -> list[Path]:
        return list_shards(self.directory)


@contextmanager
def write_shards(out_dir: Path, max_per_shard: int) -> Iterator[ShardSink]:
    """Write a directory of shards that appears at ``out_dir`` only when complete.

    Usage::

        with write_shards(Path("data/videos"), max_per_shard=32) as sink:
            sink.write("synth-000000", video_sample_files(mp4, caption, metadata))
    """
    with atomic_directory(out_dir) as temp_dir:
        sink = ShardSink(temp_dir, max_per_shard)
        try:
            yield sink
        finally:
            sink.close()  # before the rename (success) or the removal (failure)


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _encode_json(metadata: Mapping[str, Any]) -> bytes:
    return json.dumps(metadata, sort_keys=True).encode("utf-8")


def video_sample_files(mp4: bytes, caption: str, metadata: Mapping[str, Any]) -> dict[str, bytes]:
    """The files of one videos-shard sample (video2dataset's layout)."""
    return {"mp4": mp4, "txt": caption.encode("utf-8"), "json": _encode_json(metadata)}


def latent_sample_files(
    frames: np.ndarray, latents: np.ndarray, caption: str, metadata: Mapping[str, Any]
) -> dict[str, bytes]:
    """The files of one latents-shard sample; checks dtypes and that T matches."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if latents.dtype != np.float16 or latents.ndim != 4:
        raise ValueError(f"latents must be float16 [T, C, h, w], got {latents.dtype} {latents.shape}")
    if frames.shape[0] != latents.shape[0]:
        raise ValueError(f"frames have {frames.shape[0]} steps but latents {latents.shape[0]}")
    return {
        "frames.npy": encode_npy(frames),
        "latents.npy": encode_npy(latents),
        "txt": caption.encode("utf-8"),
        "json": _encode_json(metadata),
    }


# --------------------------------------------------------------------------- reading


def list_shards(directory: Path) -> list[Path]:
    """The shards of a directory in name order (empty if there are none)."""
    return sorted(Path(directory).glob(SHARD_GLOB))


def _shard_urls(directory: Path) -> list[str]:
    shards = list_shards(directory)
    if not shards:
        raise FileNotFoundError(f"no {SHARD_GLOB} files in {directory}")
    return [str(path) for path in shards]


def iter_samples(directory: Path) -> Iterator[dict[str, Any]]:
    """Every sample of every shard in ``directory``, in order, as WebDataset dicts.

    A dict holds ``__key__``, ``__url__`` and one entry of raw bytes per extension
    (``"mp4"``, ``"txt"``, ``"frames.npy"``, ...).

    Raises:
        FileNotFoundError: the directory holds no shards.
    """
    pipeline = wds.DataPipeline(wds.SimpleShardList(_shard_urls(directory)), wds.tarfile_to_samples())
    yield from pipeline


def sample_caption(sample: Mapping[str, Any]) -> str:
    raw = sample.get("txt")
    return raw.decode("utf-8", errors="replace") if raw is not None else ""


def sample_metadata(sample: Mapping[str, Any]) -> dict[str, Any]:
    raw = sample.get("json")
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        # Metadata is informational only; an unreadable one must not cost the video.
        return {}
    return value if isinstance(value, dict) else {"value": value}


@dataclass(frozen=True)
class VideoSample:
    key: str
    mp4: bytes | None  # None when the sample has no .mp4 member
    caption: str  # "" when there is no .txt
    metadata: dict[str, Any]  # {} when there is no readable .json


def iter_video_samples(directory: Path) -> Iterator[VideoSample]:
    """The samples of a videos-shard directory, in order."""
    for sample in iter_samples(directory):
        yield VideoSample(
            key=sample["__key__"],
            mp4=sample.get("mp4"),
            caption=sample_caption(sample),
            metadata=sample_metadata(sample),
        )


@dataclass(frozen=True)
class LatentSample:
    key: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    latents: np.ndarray  # float16 [T, C, h, w]
    caption: str
    metadata: dict[str, Any]


def iter_latent_samples(split_dir: Path) -> Iterator[LatentSample]:
    """The samples of one latents split (e.g. ``data/latents/val``), finite and in order."""
    for sample in iter_samples(split_dir):
        yield LatentSample(
            key=sample["__key__"],
            frames=decode_npy(sample["frames.npy"]),
            latents=decode_npy(sample["latents.npy"]),
            caption=sample_caption(sample),
            metadata=sample_metadata(sample),
        )


class _EpochShuffledShards(torch.utils.data.IterableDataset):
    """Yields ``{"url": shard}`` forever: every shard once per epoch, in a fresh order each epoch.

    The order comes from ``random.Random(seed)`` created at each ``iter()``, so every iteration
    (and every DataLoader worker, before ``split_by_worker`` deals shards out) sees the same
    sequence.
    """

    def __init__(self, urls: list[str], seed: int) -> None:
        super().__init__()
        self.urls = list(urls)
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, str]]:
        rng = random.Random(self.seed)
        while True:
            order = list(self.urls)
            rng.shuffle(order)
            for url in order:
                yield {"url": url}


def _to_tensors(sample: Mapping[str, Any]) -> tuple[str, torch.Tensor, torch.Tensor]:
    """``(key, frames, latents)``: the key travels with the clip, so nothing rereads shards for it."""
    frames = torch.from_numpy(decode_npy(sample["frames.npy"]))
    latents = torch.from_numpy(decode_npy(sample["latents.npy"]).astype(np.float32))
    return sample["__key__"], frames, latents


def _with_caption(sample: Mapping[str, Any]) -> tuple[str, torch.Tensor, torch.Tensor, str]:
    """``(key, frames, latents, caption)``: the caption for the joint objective."""
    return (*_to_tensors(sample), sample_caption(sample))


def _without_key(clip: tuple) -> tuple:
    return tuple(clip[1:])


def latents_train_dataset(
    split_dir: Path, seed: int, shuffle_buffer: int = 64, *, captions: bool = False
) -> wds.DataPipeline:
    """An endless, shuffled, seeded stream of ``(frames, latents)`` for training.

    Shards are shuffled per epoch and samples through a buffer of ``shuffle_buffer``, both
    from ``seed``: the same seed gives the same stream. Yields frames as a uint8 tensor
    [T, H, W, 3] and latents as float32 [T, C, h, w]. Wrap it in a ``DataLoader`` with a
    ``batch_size`` (it is an ``IterableDataset``); with several workers each worker reads a
    disjoint share of the shard sequence, so the stream is deterministic for a fixed
    ``num_workers`` but differs between worker counts. With ``captions``, each clip's caption
    (a string) follows.
    """
    return wds.DataPipeline(
        _EpochShuffledShards(_shard_urls(split_dir), seed),
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        # seed (not rng) so each iteration starts a fresh random.Random(seed): reproducible.
        wds.shuffle(shuffle_buffer, initial=shuffle_buffer, seed=seed),
        wds.map(_with_caption if captions else _to_tensors),
        wds.map(_without_key),
    )


def latents_eval_dataset(split_dir: Path, *, keys: bool = False, captions: bool = False) -> wds.DataPipeline:
    """A finite stream of ``(frames, latents)`` over one split in shard/sample order.

    With ``keys``, ``(key, frames, latents)``: batched by a ``DataLoader``, the keys come as a
    list of strings beside the tensors, in the same order. In order with ``num_workers=0``; with
    workers the shards are dealt out and interleaved. With ``captions``, each clip's caption
    follows (a list of strings once batched).
    """
    stages = [
        wds.SimpleShardList(_shard_urls(split_dir)),
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        wds.map(_with_caption if captions else _to_tensors),
    ]
    return wds.DataPipeline(*stages if keys else [*stages, wds.map(_without_key)])
