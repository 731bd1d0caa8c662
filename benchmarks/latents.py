"""Latent caching throughput: end-to-end frames per second (decode, resize, encode, write)
vs VAE-encode-only frames per second on frames already in memory (target: ratio >= 0.8).

    python benchmarks/latents.py [--clips 256] [--workers N] [--repeats 3]
    python benchmarks/latents.py --params P.yaml --vae DIR   # another setup (gpu_check.sh)

Uses the default params and `dvc repro`'s models/vae, on freshly generated synthetic clips
(enough of them that process start-up does not dominate), on compute.device.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import REPO, require

from fovea.compute import process_state
from fovea.data.latents import cache_latents
from fovea.data.shards import iter_latent_samples
from fovea.data.videos import write_synthetic_videos
from fovea.models.vae import VaeCodec, load_vae
from fovea.params import load_params

ENCODE_BATCH_CLIPS = 8  # cache_latents' default: clips per VAE call


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (decode workers)."""
    return sum(usage.ru_utime + usage.ru_stime
               for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None, help="decode workers (default: compute.num_workers)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each; the fastest counts")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--vae", type=Path, default=REPO / "models" / "vae")
    args = parser.parse_args()
    params = load_params(args.params)
    workers = params.compute.num_workers if args.workers is None else args.workers
    device = process_state(params.compute).device
    codec = VaeCodec(load_vae(require(args.vae)), device=device)
    codec.encode(np.zeros((2, params.frames.size, params.frames.size, 3), np.uint8))  # warm up

    end_to_end, encode_only = [], []
    cpu_end_to_end, cpu_encode_only = [], []  # CPU seconds of all processes, decode workers too
    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(tmp) / "videos"
        write_synthetic_videos(params.data.model_copy(update={"num_clips": args.clips}), params.data.seed, videos)
        for repeat in range(args.repeats):
            # Interleaved, so a slow spell of a shared machine hits both sides alike.
            latents_dir = Path(tmp) / f"latents-{repeat}"
            start, cpu_start = time.perf_counter(), cpu_seconds()
            manifest = cache_latents(
                videos, latents_dir, codec.encode, num_frames=params.frames.num, size=params.frames.size,
                val_fraction=params.data.val_fraction, clips_per_shard=params.data.clips_per_shard,
                batch_size=ENCODE_BATCH_CLIPS, fps=params.frames.fps, num_workers=workers,
            )
            end_to_end.append(time.perf_counter() - start)
            cpu_end_to_end.append(cpu_seconds() - cpu_start)
            if repeat == 0:  # every repeat caches the same frames
                frames = np.concatenate([s.frames for split in ("train", "val")
                                         for s in iter_latent_samples(latents_dir / split)])
            chunk = ENCODE_BATCH_CLIPS * params.frames.num
            start, cpu_start = time.perf_counter(), cpu_seconds()
            for first in range(0, len(frames), chunk):
                codec.encode(frames[first:first + chunk])
            encode_only.append(time.perf_counter() - start)
            cpu_encode_only.append(cpu_seconds() - cpu_start)
    count = manifest["kept"]["total"] * params.frames.num

    def rates(times: list[float]) -> str:
        return f"{count / min(times):8.1f} frames/s  (runs: {', '.join(f'{count / t:.0f}' for t in times)})"

    print(f"{manifest['kept']['total']} clips x {params.frames.num} frames at {params.frames.size}px, "
          f"{workers} decode worker(s), {device}, {torch.get_num_threads()} threads, best of {args.repeats} interleaved runs")
    print(f"  end to end (decode, resize, encode, write): {rates(end_to_end)}")
    print(f"  VAE encode only (frames in memory):          {rates(encode_only)}")
    print(f"  ratio: {min(encode_only) / min(end_to_end):.3f}   (target >= 0.8)")
    print(f"  CPU time per frame, all processes (least of the runs): end to end "
          f"{1000 * min(cpu_end_to_end) / count:.2f} ms, encode only {1000 * min(cpu_encode_only) / count:.2f} ms")


if __name__ == "__main__":
    main()
