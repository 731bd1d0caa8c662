"""Latent caching throughput: end-to-end frames per second (decode, resize, encode, write)
vs VAE-encode-only frames per second on frames already in memory (target: ratio >= 0.8).

    python benchmarks/latents.py

Uses the default params and `dvc repro`'s data/videos and models/vae.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import REPO, repo_params, require

from fovea.data.latents import cache_latents
from fovea.data.shards import iter_latent_samples
from fovea.models.vae import VaeCodec, load_vae

ENCODE_BATCH_CLIPS = 8  # cache_latents' default: clips per VAE call


def main() -> None:
    params = repo_params()
    videos = require(REPO / "data" / "videos")
    codec = VaeCodec(load_vae(require(REPO / "models" / "vae")))
    codec.encode(np.zeros((2, params.frames.size, params.frames.size, 3), np.uint8))  # warm up

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        manifest = cache_latents(
            videos, Path(tmp) / "latents", codec.encode, num_frames=params.frames.num, size=params.frames.size,
            val_fraction=params.data.val_fraction, clips_per_shard=params.data.clips_per_shard,
            batch_size=ENCODE_BATCH_CLIPS, fps=params.frames.fps, num_workers=params.compute.num_workers,
        )
        end_to_end = time.perf_counter() - start
        frames = np.concatenate([s.frames for split in ("train", "val")
                                 for s in iter_latent_samples(Path(tmp) / "latents" / split)])
    count = manifest["kept"]["total"] * params.frames.num

    chunk = ENCODE_BATCH_CLIPS * params.frames.num
    start = time.perf_counter()
    for first in range(0, len(frames), chunk):
        codec.encode(frames[first:first + chunk])
    encode_only = time.perf_counter() - start

    print(f"{manifest['kept']['total']} clips x {params.frames.num} frames at {params.frames.size}px, "
          f"{params.compute.num_workers} decode worker(s), {torch.get_num_threads()} threads")
    print(f"  end to end (decode, resize, encode, write): {count / end_to_end:8.1f} frames/s")
    print(f"  VAE encode only (frames in memory):          {len(frames) / encode_only:8.1f} frames/s")
    print(f"  ratio: {(count / end_to_end) / (len(frames) / encode_only):.3f}   (target >= 0.8)")


if __name__ == "__main__":
    main()
