"""Stage `videos`: write the source videos as WebDataset shards ({key}.mp4, .txt, .json)."""

import argparse
from pathlib import Path

from fovea.data.videos import write_synthetic_videos
from fovea.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("data/videos"))
    args = parser.parse_args()

    params = load_params(args.params)
    summary = write_synthetic_videos(params.data, params.seed, args.out)
    print(f"videos: {summary}")


if __name__ == "__main__":
    main()
