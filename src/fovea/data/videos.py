"""The ``videos`` stage's library side: write clips as WebDataset shards of MP4s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from fovea.data.shards import list_shards, video_sample_files, write_shards
from fovea.data.synthetic import make_clip
from fovea.data.video import encode_mp4
from fovea.params import DataParams

__all__ = ["synthetic_key", "write_synthetic_videos"]


def synthetic_key(index: int) -> str:
    return f"synth-{index:06d}"


def write_synthetic_videos(data: DataParams, seed: int, out_dir: Path) -> dict[str, Any]:
    """Render ``data.num_clips`` synthetic clips and write them as MP4 shards to ``out_dir``.

    Each sample holds ``{key}.mp4``, ``{key}.txt`` (the caption) and ``{key}.json`` (source,
    index, seed, fps, size, number of frames and the sprites). ``out_dir`` is replaced only once
    every shard is written.

    Returns:
        A summary: clips and shards written, and the total MP4 bytes.
    """
    if data.source != "synthetic":
        raise ValueError(
            f"write_synthetic_videos needs data.source 'synthetic', got {data.source!r}"
        )
    mp4_bytes = 0
    with write_shards(out_dir, data.clips_per_shard) as sink:
        for index in tqdm(range(data.num_clips), desc="videos", unit="clip"):
            clip = make_clip(seed, index, data.frames_per_clip, data.size, data.sprites)
            mp4 = encode_mp4(clip.frames, data.fps)
            key = synthetic_key(index)
            metadata = {
                "key": key,
                "source": "synthetic",
                "index": index,
                "seed": seed,
                "fps": data.fps,
                "size": data.size,
                "num_frames": data.frames_per_clip,
                **clip.metadata,  # "sprites" and "background"
            }
            sink.write(key, video_sample_files(mp4, clip.caption, metadata))
            mp4_bytes += len(mp4)
        clips = sink.count
    return {
        "source": "synthetic",
        "clips": clips,
        "shards": len(list_shards(out_dir)),
        "mp4_bytes": mp4_bytes,
    }
