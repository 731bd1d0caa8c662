"""Stage `vae`: fit the tiny VAE on training frames (or fetch the named pretrained one), save it
with `save_pretrained`, and report its reconstruction error on val frames."""

import argparse
from pathlib import Path

from fovea.compute import use_cuda
from fovea.data.latents import LatentSettings, iter_training_frames
from fovea.io import atomic_directory, write_json_atomic
from fovea.models.vae import VaeCodec, fit_tiny_vae, load_vae, psnr
from fovea.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--videos", type=Path, default=Path("data/videos"))
    parser.add_argument("--out", type=Path, default=Path("models/vae"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/vae.json"))
    args = parser.parse_args()

    params = load_params(args.params)
    settings = LatentSettings.from_params(params)
    frames_of = lambda split: iter_training_frames(args.videos, settings=settings, split=split)  # noqa: E731
    if params.vae.name == "tiny":
        vae = fit_tiny_vae(frames_of("train"), params.vae, params.data.seed)
    else:
        vae = load_vae(params.vae.name)
    with atomic_directory(args.out) as tmp:
        vae.save_pretrained(tmp)

    device = "cuda" if use_cuda(params.compute) else "cpu"
    mse = VaeCodec(vae, device=device).reconstruction_mse(frames_of("val"))
    write_json_atomic(args.metrics, {"vae": params.vae.name, "val_mse": mse, "val_psnr": psnr(mse)})
    print(f"vae: val reconstruction MSE {mse:.5f} (PSNR {psnr(mse):.2f} dB)")


if __name__ == "__main__":
    main()
