"""Compare every DVC experiment: results/comparison.md, results/comparison.json,
results/ratio_by_head.png, and pictures of the workspace's model: results/samples.png (decoded
predictions) and results/attention.png (where the coarse and fine queries attend).

Run it after `dvc exp run` / `python stages/sweep.py` (it is not a pipeline stage: it reads all
experiments, not one)."""

import argparse
import json
from pathlib import Path

from fovea.attention import save_attention_figure
from fovea.evaluate import run_val
from fovea.models.vae import VaeCodec, load_vae
from fovea.models.vlm import FoveatedVLM
from fovea.params import load_params
from fovea.plots import save_ratio_plot, save_samples_image
from fovea.report import (
    ReportError,
    comparison_json,
    comparison_markdown,
    read_experiments,
    same_setup,
    summarize_heads,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    args = parser.parse_args()

    params = load_params(args.repo / args.params)
    experiments, left_out = same_setup(read_experiments(args.repo))
    if not experiments:
        raise ReportError("no experiment has metrics/eval.json yet: run `dvc repro` or `dvc exp run` first")
    summaries = summarize_heads(experiments, samples=args.bootstrap, seed=args.seed)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.md").write_text(comparison_markdown(summaries, left_out))
    (args.out / "comparison.json").write_text(json.dumps(comparison_json(summaries), indent=2) + "\n")
    with_ci = [s for s in summaries if s.ratio_ci]
    save_ratio_plot(
        [f"{s.head} ({s.task})" for s in with_ci], [s.ratio for s in with_ci],
        [s.ratio_ci[0] for s in with_ci], [s.ratio_ci[1] for s in with_ci],
        args.out / "ratio_by_head.png", groups=[s.task for s in with_ci],
    )

    model = FoveatedVLM.load(args.repo / "models" / "fvlm")
    val_dir = args.repo / "data" / "latents" / "val"
    val = run_val(model, val_dir, params.eval.batch_size, max_clips=params.eval.sample_clips)
    name = f"workspace model ({model.config.head}, fine read: {model.config.fine_read})"
    save_samples_image(
        VaeCodec(load_vae(args.repo / "models" / "vae")).decode,
        *val.first_clips(params.eval.sample_clips),
        args.out / "samples.png", title=f"{name}: val clips, frames 2..T",
    )
    save_attention_figure(model, val_dir, params.eval.sample_clips, args.out / "attention.png",
                          title=f"{name}: where the coarse and fine queries attend; circle: target")
    print(f"report: {len(experiments)} experiments, {len(summaries)} (task, head) rows -> {args.out}/")


if __name__ == "__main__":
    main()
