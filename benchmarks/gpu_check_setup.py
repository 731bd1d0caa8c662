"""Prepare benchmarks/gpu_check.sh: real-architecture models with random weights saved locally,
and params.yaml = the paper preset with those paths, synthetic 256x256 clips, a fixed step count."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from model_fixtures import dinov2_small_config, save_models, sd_vae_ft_mse_config, smollm2_135m_config  # noqa: E402

from fovea.params import parse_params  # noqa: E402
from fovea.presets import merge_overrides  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    parser.add_argument("--batch-size", type=int, default=None, help="train.batch_size (default: the preset's)")
    parser.add_argument("--grad-accum", type=int, default=None, help="train.grad_accum (default: the preset's)")
    parser.add_argument("--compile", action="store_true", help="compute.compile: torch.compile the model")
    args = parser.parse_args()

    import torch

    saved = save_models(
        args.out / "models",
        sd_vae_ft_mse_config(),
        dinov2_small_config(),
        smollm2_135m_config(),
        llm_dtype=torch.bfloat16,
    )
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    preset = yaml.safe_load((REPO / "presets" / "paper.yaml").read_text())
    params = base
    merge_overrides(params, preset)
    merge_overrides(
        params,
        {
            **saved.params(),
            "data": {"source": "synthetic", "num_clips": args.clips, "frames_per_clip": 16, "size": 256},
            "train": {
                "steps": args.steps,
                **{
                    key: value
                    for key, value in (("batch_size", args.batch_size), ("grad_accum", args.grad_accum))
                    if value is not None
                },
            },
            "compute": {"device": args.device, "num_workers": 4, "compile": args.compile},
        },
    )
    parse_params(params)  # fail here, not in a stage
    (args.out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    print(f"gpu check: models and params in {args.out}")


if __name__ == "__main__":
    main()
