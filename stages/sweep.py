"""Run the control sweep as DVC experiments, one after another in the workspace:
every head x seed on the control task, then the negative control (`data.motion=pan`) for film
and the spatial head with the highest mean ratio. Each run is `dvc exp run -S ...`, so
`dvc exp show` and `python stages/report.py` see them all. Params not named here come from
params.yaml (commit it first: experiments are recorded against HEAD)."""

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HEADS = ("film", "mlp", "xattn", "sfilm", "stx")
BASELINE = "film"


def run(overrides: dict[str, object]) -> dict:
    args = [sys.executable, "-m", "dvc", "exp", "run"]
    for key, value in overrides.items():
        args += ["-S", f"{key}={value}"]
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads(Path("metrics/eval.json").read_text())
    print(f"sweep: {overrides} -> ratio {metrics['ratio']:.4f} [{metrics['ratio_ci_low']:.4f}, "
          f"{metrics['ratio_ci_high']:.4f}] in {time.perf_counter() - started:.0f} s", flush=True)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--heads", nargs="+", default=list(HEADS))
    args = parser.parse_args()
    ratios: dict[str, list[float]] = defaultdict(list)
    for head in args.heads:
        for seed in args.seeds:
            ratios[head].append(run({"data.motion": "target", "head": head, "seed": seed})["ratio"])
    spatial = [head for head in ratios if head != BASELINE]
    best = max(spatial, key=lambda head: sum(ratios[head]) / len(ratios[head]))
    print(f"sweep: best spatial head on the control task: {best}", flush=True)
    for head in (BASELINE, best):
        for seed in args.seeds:
            run({"data.motion": "pan", "head": head, "seed": seed})


if __name__ == "__main__":
    main()
