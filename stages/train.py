"""Stage `train`: train the FoveatedVLM with the head named by `head`, log curves with dvclive,
and save the checkpoint (weights + the config that built them). Runs under `python` or
`accelerate launch` (params: compute.*)."""

import argparse
import contextlib
from pathlib import Path

from dvclive import Live

from fovea.params import load_params
from fovea.compute import make_accelerator
from fovea.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--latents", type=Path, default=Path("data/latents"))
    parser.add_argument("--out", type=Path, default=Path("models/fvlm"))
    parser.add_argument("--live", type=Path, default=Path("metrics/train"))
    args = parser.parse_args()

    params = load_params(args.params)
    accelerator = make_accelerator(params.compute, params.train.grad_accum)
    # Only the main process logs; dvc.yaml owns the plot declarations, dvclive writes the step files.
    live = (
        Live(dir=str(args.live), save_dvc_exp=False, dvcyaml=None, report=None)
        if accelerator.is_main_process
        else contextlib.nullcontext()
    )
    with live as logger:
        result = train(params, args.latents, args.out, logger=logger, accelerator=accelerator)
    if accelerator.is_main_process:
        print(f"train: {result.steps} steps on {accelerator.num_processes} process(es), final {result.final}")


if __name__ == "__main__":
    main()
