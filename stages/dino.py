"""Stage `dino`: with `target: dino`, the frozen encoder's patch features of every cached clip,
normalised per channel, as shards beside the latents (data/dino, the latents' layout with the
features as `latents.npy`); with `target: vae`, only a manifest saying so (fovea.data.dino)."""

import argparse
from pathlib import Path

from fovea.compute import use_cuda
from fovea.data.dino import DinoSettings, cache_dino, frozen_dinov2, make_extractor
from fovea.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--latents", type=Path, default=Path("data/latents"))
    parser.add_argument("--out", type=Path, default=Path("data/dino"))
    args = parser.parse_args()

    params = load_params(args.params)
    settings = DinoSettings.from_params(params)
    extract = None
    if settings.target == "dino":
        extract = make_extractor(frozen_dinov2(settings), "cuda" if use_cuda(params.compute) else "cpu")
    manifest = cache_dino(args.latents, args.out, settings, extract)
    if settings.target == "dino":
        print(f"dino: features {manifest['latents_shape']} per clip, {manifest['clips']} clips -> {args.out}")
    else:
        print(f"dino: target is {settings.target}; {args.out} holds only its manifest")


if __name__ == "__main__":
    from fovea.cli import run_stage  # user errors: one line, no traceback

    run_stage(main)
