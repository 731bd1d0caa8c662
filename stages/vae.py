"""Stage `vae`: fit the tiny VAE on training frames (or fetch the named pretrained one), save it
with `save_pretrained`, and report its reconstruction error on val frames.

The split is checked before the fit, and the weights and metrics/vae.json are published
together only after every check has passed: a failed run leaves the previous pair."""

import argparse
import json
import math
import sys
from pathlib import Path

from fovea.compute import use_cuda
from fovea.data.latents import LatentSettings, iter_training_frames
from fovea.errors import FoveaUserError
from fovea.io import staged_outputs
from fovea.models.vae import VaeCodec, fit_tiny_vae, load_vae, psnr
from fovea.params import load_params
from fovea.split_check import check_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--videos", type=Path, default=Path("data/videos"))
    parser.add_argument("--out", type=Path, default=Path("models/vae"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/vae.json"))
    args = parser.parse_args()

    params = load_params(args.params)
    counts, warning = check_split(args.videos, params.data.val_fraction)
    print(f"vae: clips by split: train {counts['train']}, val {counts['val']}")
    if warning:
        print(f"vae: {warning}", file=sys.stderr)
    # Only what sampling the frames needs: the VAE does not depend on the shard size or workers.
    settings = LatentSettings(
        num_frames=params.frames.num,
        size=params.frames.size,
        val_fraction=params.data.val_fraction,
        fps=params.frames.fps,
    )
    # At most vae.fit_frames frames per split, in shard order: the fit draws params.vae.steps
    # batches from them, and the val check needs no more.
    frames_of = lambda split: iter_training_frames(  # noqa: E731
        args.videos, settings=settings, split=split, limit=params.vae.fit_frames
    )
    device = "cuda" if use_cuda(params.compute) else "cpu"
    if params.vae.name == "tiny":
        vae = fit_tiny_vae(frames_of("train"), params.vae, params.data.seed, device=device)
    else:
        vae = load_vae(params.vae.name)

    mse = VaeCodec(vae, device=device).reconstruction_mse(frames_of("val"))
    if not math.isfinite(mse):
        hint = ": the fit diverged; try a lower vae.lr" if params.vae.name == "tiny" else ""
        raise FoveaUserError(f"the VAE's val reconstruction error is {mse}{hint}")
    with staged_outputs(args.out, args.metrics) as (vae_dir, metrics_path):
        vae.save_pretrained(vae_dir)
        metrics = {"vae": params.vae.name, "val_mse": mse, "val_psnr": psnr(mse)}
        metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(f"vae: val reconstruction MSE {mse:.5f} (PSNR {psnr(mse):.2f} dB)")


if __name__ == "__main__":
    from fovea.cli import run_stage  # user errors: one line, no traceback

    run_stage(main)
