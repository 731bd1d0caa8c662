"""Stage `latents`: decode, sample and crop every clip, encode it with the VAE and write
train/val latent shards plus a manifest of kept and skipped clips. Runs under `python` or
`accelerate launch` (params: compute.*): processes share the videos, process 0 gathers."""

import argparse
from pathlib import Path

from fovea.compute import process_state
from fovea.data.latents import LatentSettings, Processes, cache_latents
from fovea.models.vae import VaeCodec, load_vae
from fovea.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--videos", type=Path, default=Path("data/videos"))
    parser.add_argument("--vae", type=Path, default=Path("models/vae"))
    parser.add_argument("--out", type=Path, default=Path("data/latents"))
    args = parser.parse_args()

    params = load_params(args.params)
    state = process_state(params.compute)
    codec = VaeCodec(load_vae(args.vae), device=state.device)
    manifest = cache_latents(
        videos_dir=args.videos,
        out_dir=args.out,
        encode=codec.encode,
        settings=LatentSettings.from_params(params),
        processes=Processes(state.process_index, state.num_processes, state.wait_for_everyone),
    )
    if manifest is not None:
        print(f"latents: kept {manifest['kept']}, skipped {manifest['skipped']} ({state.num_processes} process(es))")


if __name__ == "__main__":
    from fovea.cli import run_stage  # user errors: one line, no traceback

    run_stage(main)
