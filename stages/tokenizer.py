"""Stage `tokenizer`: the caption tokenizer the joint objective uses, saved with `save_pretrained`.

For `model.llm: tiny` a word-level tokenizer is fitted offline on the training split's captions;
for a named or local LLM its own tokenizer is loaded and saved, so train and evaluate read it
without the hub. The output is written to a staging path and published when complete."""

import argparse
from pathlib import Path

from fovea.io import staged_outputs
from fovea.params import load_params
from fovea.tokenizer import build_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--videos", type=Path, default=Path("data/videos"))
    parser.add_argument("--out", type=Path, default=Path("models/tokenizer"))
    args = parser.parse_args()

    params = load_params(args.params)
    tokenizer = build_tokenizer(params.model.llm, args.videos, params.data.val_fraction)
    with staged_outputs(args.out) as (out,):
        tokenizer.save_pretrained(str(out))
    print(f"tokenizer: {len(tokenizer)} tokens ({params.model.llm}) -> {args.out}")


if __name__ == "__main__":
    from fovea.cli import run_stage  # user errors: one line, no traceback

    run_stage(main)
