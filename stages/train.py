"""Stage `train`: train the FoveatedVLM with the head named by `head`, log curves with dvclive,
and save the checkpoint (weights + the config that built them)."""

import argparse
from pathlib import Path

from dvclive import Live

from fovea.params import load_params
from fovea.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--latents", type=Path, default=Path("data/latents"))
    parser.add_argument("--out", type=Path, default=Path("models/fvlm"))
    parser.add_argument("--live", type=Path, default=Path("metrics/train"))
    args = parser.parse_args()

    params = load_params(args.params)
    # dvc.yaml owns the plot declarations; dvclive only writes the step files.
    with Live(dir=str(args.live), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        result = train(params, args.latents, args.out, logger=live)
    print(f"train: {result.steps} steps, final {result.final}")


if __name__ == "__main__":
    main()
