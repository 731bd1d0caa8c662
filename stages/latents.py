"""Stage `latents`: decode, sample and crop every clip, encode it with the VAE and write
train/val latent shards plus a manifest of kept and skipped clips."""

import argparse
from pathlib import Path

from fovea.data.latents import cache_latents
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
    codec = VaeCodec(load_vae(args.vae))
    manifest = cache_latents(
        args.videos,
        args.out,
        codec.encode,
        num_frames=params.frames.num,
        size=params.frames.size,
        val_fraction=params.data.val_fraction,
        clips_per_shard=params.data.clips_per_shard,
        fps=params.frames.fps,
    )
    print(f"latents: kept {manifest['kept']}, skipped {manifest['skipped']}")


if __name__ == "__main__":
    main()
