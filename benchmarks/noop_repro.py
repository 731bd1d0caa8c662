"""Wall time of `dvc repro` when nothing changed (target: <= 2 s).

python benchmarks/noop_repro.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _common import REPO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    command = [sys.executable, "-m", "dvc", "repro"]
    first = subprocess.run(command, cwd=REPO, check=False, capture_output=True, text=True)
    if first.returncode != 0 or "Running stage" in first.stdout:
        raise SystemExit("the pipeline was not up to date: this run of `dvc repro` did work; run the benchmark again")
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    print(
        f"`dvc repro` with nothing changed, {args.runs} runs: median {statistics.median(times):.2f} s, "
        f"min {min(times):.2f} s, max {max(times):.2f} s   (target <= 2 s)"
    )


if __name__ == "__main__":
    main()
