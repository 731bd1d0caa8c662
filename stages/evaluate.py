"""Stage `evaluate`: held-out fine and coarse losses and their ratio, into metrics/eval.json."""

import argparse
from pathlib import Path

from fovea.evaluate import evaluate
from fovea.io import write_json_atomic
from fovea.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", type=Path, default=Path("models/fvlm"))
    parser.add_argument("--latents", type=Path, default=Path("data/latents"))
    parser.add_argument("--out", type=Path, default=Path("metrics/eval.json"))
    args = parser.parse_args()

    params = load_params(args.params)
    metrics = evaluate(args.model, args.latents / "val", batch_size=params.eval.batch_size)
    write_json_atomic(args.out, metrics)
    print(f"evaluate: {metrics}")


if __name__ == "__main__":
    main()
