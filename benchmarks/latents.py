"""Latent caching throughput: end-to-end frames per second (decode, resize, encode, write)
vs VAE-encode-only frames per second on frames already in memory (target: ratio >= 0.8).

    python benchmarks/latents.py [--clips 256] [--workers N] [--repeats 5]
    python benchmarks/latents.py --params P.yaml --vae DIR   # another setup (gpu_check.sh)
    # N processes, as the latents stage runs under compute.launch (on CPUs Accelerate gives each
    # process 1 thread unless OMP_NUM_THREADS says otherwise):
    python -m accelerate.commands.launch --multi_gpu --num_processes 2 benchmarks/latents.py

Uses the default params and `dvc repro`'s models/vae, on freshly generated synthetic clips
(enough of them that process start-up does not dominate), on compute.device. With several
processes both sides use all of them: the stage's own split of the videos end to end, and an
even split of the same frames for encoding only; a side's time is from the barrier before it
to the barrier after it, process 0's gathering of the shards included.
The two sides run alternately; the ratio is the median of the ratios of adjacent runs.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import REPO, median_ratio, require

from fovea.compute import process_state
from fovea.data.latents import LatentSettings, Processes, cache_latents
from fovea.data.shards import iter_latent_samples
from fovea.data.sources import write_videos
from fovea.models.vae import VaeCodec, load_vae
from fovea.params import load_params

ENCODE_BATCH_CLIPS = 8  # cache_latents' default: clips per VAE call


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (decode workers)."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def all_processes_sum(value: float, world_size: int) -> float:
    if world_size == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(total)
    return float(total.item())


def shared_workdir(rank: int, world_size: int) -> Path:
    """A temporary folder made by process 0, its path sent to the others (one machine)."""
    path = [tempfile.mkdtemp(prefix="fovea-latents-bench-") if rank == 0 else None]
    if world_size > 1:
        torch.distributed.broadcast_object_list(path, src=0)
    return Path(path[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument(
        "--workers", type=int, default=None, help="decode workers per process (default: compute.num_workers)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs of each side")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--vae", type=Path, default=REPO / "models" / "vae")
    args = parser.parse_args()
    params = load_params(args.params)
    workers = params.compute.num_workers if args.workers is None else args.workers
    state = process_state(params.compute)
    rank, world_size, barrier = state.process_index, state.num_processes, state.wait_for_everyone
    codec = VaeCodec(load_vae(require(args.vae)), device=state.device)
    codec.encode(np.zeros((2, params.frames.size, params.frames.size, 3), np.uint8))  # warm up

    def timed(run: Callable[..., object], *run_args: object, **run_kwargs: object) -> tuple[float, float]:
        """Wall seconds of ``run`` across all processes and CPU seconds summed over them."""
        barrier()
        start, cpu_start = time.perf_counter(), cpu_seconds()
        run(*run_args, **run_kwargs)
        cpu = cpu_seconds() - cpu_start
        barrier()
        return time.perf_counter() - start, all_processes_sum(cpu, world_size)

    def encode_share(frames: np.ndarray) -> None:
        chunk = ENCODE_BATCH_CLIPS * params.frames.num
        for first in range(0, len(frames), chunk):
            codec.encode(frames[first : first + chunk])

    end_to_end, encode_only = [], []
    cpu_end_to_end, cpu_encode_only = [], []  # CPU seconds of all processes, decode workers too
    workdir = shared_workdir(rank, world_size)
    try:
        videos = workdir / "videos"
        if rank == 0:
            write_videos(params.data.model_copy(update={"num_clips": args.clips}), videos)
        for repeat in range(args.repeats):
            latents_dir = workdir / f"latents-{repeat}"
            settings = replace(LatentSettings.from_params(params), batch_size=ENCODE_BATCH_CLIPS, num_workers=workers)
            wall, cpu = timed(
                cache_latents,
                videos_dir=videos,
                out_dir=latents_dir,
                encode=codec.encode,
                settings=settings,
                processes=Processes(rank, world_size, barrier),
            )
            end_to_end.append(wall)
            cpu_end_to_end.append(cpu)
            if repeat == 0:  # every repeat caches the same frames; each process encodes its share
                frames = np.concatenate(
                    [s.frames for split in ("train", "val") for s in iter_latent_samples(latents_dir / split)]
                )
                count = len(frames)
                share = frames[rank::world_size]
            wall, cpu = timed(encode_share, share)
            encode_only.append(wall)
            cpu_encode_only.append(cpu)
        barrier()  # every process is done with the files
    finally:
        if rank == 0:
            shutil.rmtree(workdir, ignore_errors=True)
    if rank != 0:
        return

    def rates(times: list[float]) -> str:
        return (
            f"{count / statistics.median(times):8.1f} frames/s  (runs: {', '.join(f'{count / t:.0f}' for t in times)})"
        )

    print(
        f"{count // params.frames.num} clips x {params.frames.num} frames at {params.frames.size}px, "
        f"{world_size} process(es) x "
        f"{torch.get_num_threads()} thread(s) on {state.device}, {workers} decode worker(s) each, "
        f"{args.repeats} alternating runs of each side, medians"
    )
    print(f"  end to end (decode, resize, encode, write): {rates(end_to_end)}")
    print(f"  VAE encode only (frames in memory):          {rates(encode_only)}")
    print(f"  ratio: {median_ratio(encode_only, end_to_end)}   (target >= 0.8)")
    print(
        f"  CPU time per frame, all processes (medians): end to end "
        f"{1000 * statistics.median(cpu_end_to_end) / count:.2f} ms, "
        f"encode only {1000 * statistics.median(cpu_encode_only) / count:.2f} ms"
    )


if __name__ == "__main__":
    main()
