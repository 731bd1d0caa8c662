"""Stage `evaluate`: held-out metrics into metrics/eval.json, per-clip losses into
metrics/clips.json (for the report), decoded sample predictions into metrics/samples.png and
where the coarse and fine queries attend into metrics/attention.png."""

import argparse
from pathlib import Path

from fovea.attention import save_attention_figure
from fovea.compute import use_cuda
from fovea.data.targets import TargetCacheError, target_dir
from fovea.evaluate import evaluate
from fovea.io import staged_outputs, write_json_atomic
from fovea.models.vae import VaeCodec, load_vae
from fovea.params import load_params
from fovea.plots import pca_decoder, save_samples_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", type=Path, default=Path("models/fvlm"))
    parser.add_argument("--vae", type=Path, default=Path("models/vae"))
    parser.add_argument("--latents", type=Path, default=Path("data/latents"))
    parser.add_argument("--dino", type=Path, default=Path("data/dino"), help="DINO features (target: dino)")
    parser.add_argument("--out", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("--clips", type=Path, default=Path("metrics/clips.json"))
    parser.add_argument("--samples", type=Path, default=Path("metrics/samples.png"))
    parser.add_argument("--attention", type=Path, default=Path("metrics/attention.png"))
    args = parser.parse_args()

    params = load_params(args.params)
    device = "cuda" if use_cuda(params.compute) else "cpu"
    data_dir = target_dir(params.target, args.latents, args.dino)  # the shards holding the prediction target
    result = evaluate(
        model_dir=args.model,
        val_dir=data_dir / "val",
        train_dir=data_dir / "train",
        batch_size=params.eval.batch_size,
        bootstrap=params.eval.bootstrap,
        seed=params.seed,
        device=device,
    )
    metrics, model, val = result.metrics, result.model, result.val
    if metrics["target"] != params.target:
        raise TargetCacheError(
            f"{args.model} predicts target {metrics['target']!r}, params say {params.target!r}: rerun train"
        )
    shown = val.first_clips(params.eval.sample_clips)
    if params.target == "dino":  # feature maps: their first 3 principal components as RGB
        decode, what = pca_decoder(shown[0]), " (DINO features, first 3 PCA components as RGB)"
    else:
        decode, what = VaeCodec(load_vae(args.vae), device=device).decode, ""
    # All four outputs come from this run or none does.
    with staged_outputs(args.out, args.clips, args.samples, args.attention) as (out, clips, samples, attention):
        write_json_atomic(out, metrics)
        write_json_atomic(clips, result.clips)
        save_samples_image(decode, *shown, samples, title=f"{metrics['head']}: val clips, frames 2..T{what}")
        save_attention_figure(model, data_dir / "val", params.eval.sample_clips, attention)
    print(
        f"evaluate: {metrics['head']} ratio over frames {metrics['headline_frames']} {metrics['ratio_late']:.4f} "
        f"[{metrics['ratio_late_ci_low']:.4f}, {metrics['ratio_late_ci_high']:.4f}] over {metrics['num_clips']} clips; "
        f"samples -> {args.samples}, attention -> {args.attention}"
    )


if __name__ == "__main__":
    from fovea.cli import run_stage  # user errors: one line, no traceback

    run_stage(main)
