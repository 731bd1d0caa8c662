"""Data for the pipeline: synthetic clips, MP4 encode/decode, WebDataset shards, latents cache.

- :mod:`fovea.data.synthetic`: procedural clips of bouncing sprites (``make_clip``).
- :mod:`fovea.data.video`: MP4 encode/decode, frame sampling, resize + centre crop.
- :mod:`fovea.data.shards`: temp-then-rename shard writing, shard readers, training streams.
- :mod:`fovea.data.split`: train/val split by a stable hash of the key.
- :mod:`fovea.data.videos`: the ``videos`` stage (``write_synthetic_videos``).
- :mod:`fovea.data.latents`: the ``latents`` stage (``cache_latents``, ``iter_training_frames``).
"""

from fovea.data.latents import LatentCacheError, cache_latents, iter_training_frames
from fovea.data.shards import (
    LatentSample,
    VideoSample,
    iter_latent_samples,
    iter_video_samples,
    latents_eval_dataset,
    latents_train_dataset,
    write_shards,
)
from fovea.data.split import split_of
from fovea.data.synthetic import SyntheticClip, make_clip
from fovea.data.video import (
    ClipTooShortError,
    VideoDecodeError,
    decode_video,
    encode_mp4,
    load_clip_frames,
    resize_center_crop,
    sample_frame_indices,
)
from fovea.data.videos import write_synthetic_videos

__all__ = [
    "ClipTooShortError",
    "LatentCacheError",
    "LatentSample",
    "SyntheticClip",
    "VideoDecodeError",
    "VideoSample",
    "cache_latents",
    "decode_video",
    "encode_mp4",
    "iter_latent_samples",
    "iter_training_frames",
    "iter_video_samples",
    "latents_eval_dataset",
    "latents_train_dataset",
    "load_clip_frames",
    "make_clip",
    "resize_center_crop",
    "sample_frame_indices",
    "split_of",
    "write_shards",
    "write_synthetic_videos",
]
