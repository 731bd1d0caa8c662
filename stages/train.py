"""Stage `train`: train the FoveatedVLM with the head named by `head`, log curves with dvclive,
and save the checkpoint (weights + the config that built them). Runs under `python` or
`accelerate launch` (params: compute.*).

The checkpoint and the curves are written to staging paths and published together when
training has finished: an interrupted or failed run leaves the previous model and curves."""

import argparse
import contextlib
from pathlib import Path

from dvclive import Live

from fovea.compute import make_accelerator
from fovea.data.targets import target_dir
from fovea.errors import FoveaUserError
from fovea.io import staged_outputs
from fovea.params import load_params
from fovea.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--latents", type=Path, default=Path("data/latents"))
    parser.add_argument("--dino", type=Path, default=Path("data/dino"), help="DINO features (target: dino)")
    parser.add_argument("--tokenizer", type=Path, default=Path("models/tokenizer"))
    parser.add_argument("--out", type=Path, default=Path("models/fvlm"))
    parser.add_argument("--live", type=Path, default=Path("metrics/train"))
    args = parser.parse_args()

    params = load_params(args.params)
    if not (args.latents / "manifest.json").is_file():
        raise FoveaUserError(f"no latents: {args.latents}/manifest.json is missing (run the latents stage first)")
    data_dir = target_dir(params.target, args.latents, args.dino)  # the shards holding the prediction target
    accelerator = make_accelerator(params.compute, params.train.grad_accum)
    main_process = accelerator.is_main_process
    with staged_outputs(args.out, args.live, publish=main_process) as (model_dir, live_dir):
        # Only the main process logs; dvc.yaml owns the plot declarations, dvclive writes the step files.
        live = (
            Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)
            if main_process
            else contextlib.nullcontext()
        )
        with live as logger:
            result = train(
                params, data_dir, model_dir, logger=logger, accelerator=accelerator, tokenizer_dir=args.tokenizer
            )
    if main_process:
        print(f"train: {result.steps} steps on {accelerator.num_processes} process(es), final {result.final}")


if __name__ == "__main__":
    from fovea.cli import run_stage  # user errors: one line, no traceback

    run_stage(main)
