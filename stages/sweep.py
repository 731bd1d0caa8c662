"""Run a control sweep as DVC experiments, one after another in the workspace.

Heads (the default): every head x
seed on the control task, then the negative control (`data.motion=pan`) for film and the spatial
head (xattn, sfilm or stx) with the highest mean ratio in the first round; in rounds of three
seeds, so a sweep stopped early still covers every head and both tasks. Each run is a named
`dvc exp run -S ...` (`control-sfilm-s0`, `pan-film-s2`, ...), so `dvc exp show` and
`python stages/report.py` see them all; rerun at the same commit, it skips the runs already there.
At the end the workspace is restored to the run with params.yaml's own head and seed on the
control task (`dvc exp apply`), so the report's pictures show the default model. Params not named
here come from params.yaml: commit it first, since experiments are recorded against HEAD.

Objectives (`--objectives`): film and the spatial head (`--spatial`, default sfilm) on the control
task, each trained with the reconstruction objective on VAE latents (`recon-vae`), with the joint
caption + reconstruction objective (`joint-vae`, `train.objective=joint`) and on DINO patch
features (`recon-dino`, `target=dino`), seed by seed (`obj-joint-vae-sfilm-s0`, ...)."""

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from fovea.experiments import read_experiments
from fovea.params import load_params

HEADS = ("film", "mlp", "xattn", "sfilm", "stx")
SPATIAL = ("xattn", "sfilm", "stx")  # mlp has no spatial structure (DESIGN.md)
BASELINE = "film"
ROUND = 3


def dvc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], check=True, stdout=subprocess.DEVNULL)


def require_clean_branch() -> None:
    """Experiments are recorded against HEAD and `dvc exp run` checks out HEAD's commit while it
    runs: a sweep needs a branch and no uncommitted changes, and nothing else committing in this
    clone until it ends (run it in a clone of its own)."""
    branch = subprocess.run(
        ["git", "symbolic-ref", "-q", "--short", "HEAD"], check=False, capture_output=True, text=True
    )
    if branch.returncode != 0:
        sys.exit("sweep: HEAD is detached: check out a branch first (git checkout main)")
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if dirty:
        sys.exit(f"sweep: uncommitted changes would not be part of the runs' commit; commit them first:\n{dirty}")


# The objective sweep's variants: their -S settings beside head and seed.
VARIANTS = {
    "recon-vae": {"train.objective": "recon", "target": "vae"},
    "joint-vae": {"train.objective": "joint", "target": "vae"},
    "recon-dino": {"train.objective": "recon", "target": "dino"},
}


def run(name: str, settings: dict[str, object], done: dict[str, dict]) -> dict:
    if name in done:  # a rerun of an interrupted sweep at the same commit
        print(f"sweep: {name} already run at this commit, ratio {done[name]['ratio_late']:.4f}", flush=True)
        return done[name]
    started = time.perf_counter()
    dvc("exp", "run", "-n", name, *(arg for key, value in settings.items() for arg in ("-S", f"{key}={value}")))
    metrics = json.loads(Path("metrics/eval.json").read_text())
    print(
        f"sweep: {name} -> ratio (frames {metrics['headline_frames']}) {metrics['ratio_late']:.4f} "
        f"[{metrics['ratio_late_ci_low']:.4f}, {metrics['ratio_late_ci_high']:.4f}], "
        f"h-mean gap {metrics['h_mean_gap']:.4f}, "
        f"in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # Five seeds: with two or three the seed level of the bootstrap is degenerate (README).
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    parser.add_argument("--objectives", action="store_true", help="the objective and target sweep (above)")
    parser.add_argument("--spatial", default="sfilm", choices=SPATIAL, help="--objectives: the spatial head")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    default = load_params()
    if BASELINE not in args.heads or not set(SPATIAL) & set(args.heads):
        parser.error(f"--heads needs {BASELINE} and at least one spatial head ({', '.join(SPATIAL)})")

    require_clean_branch()
    done = {exp.name: exp.metrics for exp in read_experiments(Path("."))}
    if args.objectives:
        sweep_objectives(args.seeds, args.variants, (BASELINE, args.spatial), done)
        heads, default_run = (BASELINE, args.spatial), f"obj-recon-vae-{default.head}-s{default.seed}"
        ran_default = "recon-vae" in args.variants
    else:
        sweep_heads(args.seeds, args.heads, done)
        heads, default_run, ran_default = args.heads, f"control-{default.head}-s{default.seed}", True
    # The workspace ends as the run of params.yaml's own settings, not the last run's.
    if ran_default and default.head in heads and default.seed in args.seeds:
        dvc("exp", "apply", default_run)
        print(f"sweep: workspace restored to {default_run}", flush=True)


def sweep_objectives(seeds: list[int], variants: list[str], heads: tuple[str, str], done: dict[str, dict]) -> None:
    # Seed by seed, so a sweep stopped early holds every variant and head.
    for seed in seeds:
        for variant in variants:
            for head in heads:
                settings = {"data.motion": "target", "head": head, "seed": seed, **VARIANTS[variant]}
                run(f"obj-{variant}-{head}-s{seed}", settings, done)


def sweep_heads(seeds_all: list[int], heads: list[str], done: dict[str, dict]) -> None:
    ratios: dict[str, list[float]] = defaultdict(list)
    best = None
    # In rounds of three seeds (control, then pan), so a sweep stopped early still holds every
    # head and both tasks.
    for first in range(0, len(seeds_all), ROUND):
        seeds = seeds_all[first : first + ROUND]
        for seed in seeds:
            for head in heads:
                settings = {"data.motion": "target", "head": head, "seed": seed}
                ratios[head].append(run(f"control-{head}-s{seed}", settings, done)["ratio_late"])
        if best is None:
            best = max((h for h in SPATIAL if h in ratios), key=lambda h: sum(ratios[h]) / len(ratios[h]))
            print(f"sweep: best spatial head on the control task: {best}", flush=True)
        for seed in seeds:
            for head in (BASELINE, best):
                run(f"pan-{head}-s{seed}", {"data.motion": "pan", "head": head, "seed": seed}, done)


if __name__ == "__main__":
    from fovea.cli import run_stage  # user errors: one line, no traceback

    run_stage(main)
