"""Stage `videos`: write the source videos as WebDataset shards ({key}.mp4, .txt, .json)."""

import argparse
from pathlib import Path

from fovea.data.sources import write_videos
from fovea.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("data/videos"))
    args = parser.parse_args()

    params = load_params(args.params)
    # Nothing usable (or an unreadable input) is a VideoSourceError whose message holds the
    # counts by reason: run_stage prints it as one line.
    summary = write_videos(params.data, args.out)
    # Real sources return their report (also in <out>/report.json); its examples are long.
    shown = {key: value for key, value in summary.items() if key != "examples"}
    print(f"videos: {shown}")


if __name__ == "__main__":
    from fovea.cli import run_stage  # user errors: one line, no traceback

    run_stage(main)
