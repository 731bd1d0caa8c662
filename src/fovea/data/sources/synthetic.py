"""The ``synthetic`` source: rendered clips (the control task or bouncing sprites) as MP4 shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from fovea.data.control import CELL_PIXELS, make_control_clip
from fovea.data.encode import encode_mp4
from fovea.data.shards import list_shards, video_sample_files, write_shards
from fovea.data.sources.registry import register_source
from fovea.data.synthetic import SyntheticClip, make_clip
from fovea.params import DataParams

__all__ = ["synthetic_clip", "synthetic_key", "write_synthetic_videos"]


def synthetic_key(index: int) -> str:
    return f"synth-{index:06d}"


def synthetic_clip(data: DataParams, index: int) -> SyntheticClip:
    """Clip ``index`` of the synthetic task ``data.task``, drawn from ``data.seed``."""
    if data.task == "control":
        return make_control_clip(data.seed, index, data.frames_per_clip, data.size, data.distractors, data.motion)
    return make_clip(data.seed, index, data.frames_per_clip, data.size, data.sprites)


def _check_control_fits(data: DataParams) -> None:
    if data.task != "control":
        return
    if data.size % CELL_PIXELS:
        raise ValueError(f"data.size ({data.size}) must be a multiple of {CELL_PIXELS} for the control task")
    cells = (data.size // CELL_PIXELS) ** 2
    # The target's path may cover up to one cell per frame; distractors sit on the others.
    free = max(0, cells - data.frames_per_clip)
    if data.distractors > free:
        raise ValueError(
            f"data.distractors ({data.distractors}) may not fit: a {data.size}-px frame has "
            f"{cells} cells and the target's path over {data.frames_per_clip} frames can take "
            f"{min(cells, data.frames_per_clip)}"
        )


@register_source("synthetic", check=_check_control_fits)
def write_synthetic_videos(data: DataParams, out_dir: Path) -> dict[str, Any]:
    """Render ``data.num_clips`` synthetic clips and write them as MP4 shards to ``out_dir``.

    Each sample holds ``{key}.mp4``, ``{key}.txt`` (the caption) and ``{key}.json`` (source,
    index, seed, fps, size, number of frames and the task's own facts). ``out_dir`` is replaced
    only once every shard is written.

    Returns:
        A summary: clips and shards written, and the total MP4 bytes.
    """
    mp4_bytes = 0
    with write_shards(out_dir, data.clips_per_shard) as sink:
        for index in tqdm(range(data.num_clips), desc="videos", unit="clip"):
            clip = synthetic_clip(data, index)
            mp4 = encode_mp4(clip.frames, data.fps)
            key = synthetic_key(index)
            metadata = {
                "key": key,
                "source": "synthetic",
                "index": index,
                "seed": data.seed,
                "fps": data.fps,
                "size": data.size,
                "num_frames": data.frames_per_clip,
                **clip.metadata,  # the task's own: its target and distractors, or its sprites
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
