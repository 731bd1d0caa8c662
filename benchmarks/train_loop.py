"""Training step time: the real loop reading latent shards vs the same loop on a batch already
in memory (target: ratio <= 1.10), and cached latents vs encoding frames with the VAE inside
every step, as the original study did (the speed-up).

    python benchmarks/train_loop.py [--steps 20] [--rounds 5]
    python benchmarks/train_loop.py --params P.yaml --latents DIR --vae DIR   # another setup

Uses the default params and the cached data of `dvc repro` (data/latents, models/vae), on
compute.device. Each round runs the three loops one after another for ``--steps`` steps; the
figures are medians over rounds of each loop's median step time, and the ratios medians of the
per-round ratios, so a slow or fast spell of a shared machine hits both sides of a ratio alike.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

import torch
from _common import REPO, StepClock, median_ratio, require

from fovea.compute import process_state
from fovea.data.shards import iter_latent_samples
from fovea.models.vae import VaeCodec, load_vae
from fovea.params import load_params
from fovea.train import train

WARMUP_STEPS = 5  # step intervals left out of the median (allocator, worker start-up)


def median_step(params, latents_dir: Path, batches=None, steps: int = 40) -> float:
    clock = StepClock()
    run = params.model_copy(update={"train": params.train.model_copy(update={"steps": steps})})
    with tempfile.TemporaryDirectory() as out:
        train(run, latents_dir, Path(out) / "fvlm", logger=clock, batches=batches)
    return clock.median_step(skip=WARMUP_STEPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20, help="steps per loop and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the three loops, run alternately")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--latents", type=Path, default=REPO / "data" / "latents")
    parser.add_argument("--vae", type=Path, default=REPO / "models" / "vae")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.steps < WARMUP_STEPS + 2:
        parser.error(f"--steps must be at least {WARMUP_STEPS + 2}: the first {WARMUP_STEPS} step times are warm-up")

    params = load_params(args.params)
    latents_dir = require(args.latents)
    batch = params.train.batch_size
    samples = list(itertools.islice(iter_latent_samples(latents_dir / "train"), batch))
    frames = torch.stack([torch.from_numpy(s.frames) for s in samples])
    latents = torch.stack([torch.from_numpy(s.latents.astype("float32")) for s in samples])

    # The original design: every step encodes its frames with the VAE before the model runs.
    codec = VaeCodec(load_vae(require(args.vae)), batch_size=64, device=process_state(params.compute).device)

    def encoded_in_step():
        while True:
            with torch.no_grad():
                fresh = torch.from_numpy(codec.encode(frames.flatten(0, 1).numpy())).view_as(latents)
            yield frames, fresh

    shards, memory, in_step = [], [], []
    for _ in range(args.rounds):
        shards.append(median_step(params, latents_dir, steps=args.steps))
        memory.append(median_step(params, latents_dir, batches=itertools.repeat((frames, latents)), steps=args.steps))
        in_step.append(median_step(params, latents_dir, batches=encoded_in_step(), steps=args.steps))

    def step_ms(times: list[float]) -> str:
        return f"{statistics.median(times) * 1000:8.1f} ms"

    print(
        f"head {params.head}, batch {batch} clips x {params.frames.num} frames of {params.frames.size}px, "
        f"{process_state(params.compute).device}, {torch.get_num_threads()} threads, {args.rounds} rounds of "
        f"{args.steps} steps per loop (medians; the first {WARMUP_STEPS} step times of each run left out)"
    )
    print(f"  step, real loop (latent shards, {params.compute.num_workers} reader workers): {step_ms(shards)}")
    print(f"  step, batch already in memory:                     {step_ms(memory)}")
    print(f"  ratio real / in-memory: {median_ratio(shards, memory)}   (target <= 1.10)")
    print(f"  step, VAE encoding inside the step (original):     {step_ms(in_step)}")
    print(f"  speed-up of cached latents over VAE-in-step: {median_ratio(in_step, shards, unit='x')}")


if __name__ == "__main__":
    main()
