"""Compare every DVC experiment: results/comparison.md, results/comparison.json,
results/ratio_by_head.png, results/runs/ (each run's params, metrics and per-clip losses, from
which the rest is computed), and the workspace model's pictures as its evaluate stage drew them:
results/samples.png (decoded predictions) and results/attention.png (where the queries attend).

Run it after `dvc exp run` / `python stages/sweep.py` (it is not a pipeline stage: it reads all
experiments, not one). DVC lists the experiments of the current commit only; once anything is
committed, `--from-runs` rebuilds the report from results/runs/ instead (and leaves the pictures
in OUT as they are: the workspace's are not those runs')."""

import argparse
import json
import shutil
from pathlib import Path

from fovea.experiments import ReportError, load_runs, read_experiments, save_runs
from fovea.plots import save_ratio_plot
from fovea.report import same_setup, summarize_heads
from fovea.report_text import comparison_json, comparison_markdown

PICTURES = ("samples.png", "attention.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    parser.add_argument(
        "--commits",
        type=int,
        default=1,
        help="read the experiments of the last N commits (a sweep is recorded against the commit it ran on)",
    )
    parser.add_argument(
        "--from-runs", action="store_true", help="read the runs saved in OUT/runs/ instead of `dvc exp show`"
    )
    parser.add_argument("--force", action="store_true", help="replace OUT/runs/ even with fewer runs than it holds")
    args = parser.parse_args()

    runs_dir = args.out / "runs"
    found = load_runs(runs_dir) if args.from_runs else read_experiments(args.repo, args.commits)
    saved = len(list(runs_dir.glob("*.json"))) if runs_dir.is_dir() else 0
    if not args.from_runs and len(found) < saved and not args.force:
        raise ReportError(
            f"`dvc exp show` lists {len(found)} runs with metrics, {runs_dir} holds {saved}: experiments "
            "belong to the commit they ran on, so a commit since the sweep hides them. Read more commits "
            "with --commits N, rebuild from the saved runs with --from-runs, rerun the sweep, or replace "
            "them with --force."
        )
    experiments, left_out = same_setup(found)
    if not experiments:
        raise ReportError(
            "no experiment has metrics/eval.json from the current code yet"
            + (f" ({len(left_out)} left out: {left_out[0][1]})" if left_out else "")
            + ": run `dvc repro` or `dvc exp run` first"
        )
    summaries = summarize_heads(experiments, samples=args.bootstrap, seed=args.seed)

    args.out.mkdir(parents=True, exist_ok=True)
    if not args.from_runs:
        save_runs(found, runs_dir)
    (args.out / "comparison.md").write_text(comparison_markdown(summaries, left_out))
    (args.out / "comparison.json").write_text(json.dumps(comparison_json(summaries), indent=2) + "\n")
    with_ci = [s for s in summaries if s.ratio_ci]
    save_ratio_plot(
        [f"{s.head} ({s.task}, {s.protocol})" for s in with_ci],
        [s.ratio for s in with_ci],
        [s.ratio_ci[0] for s in with_ci],
        [s.ratio_ci[1] for s in with_ci],
        args.out / "ratio_by_head.png",
        groups=[s.task for s in with_ci],
    )
    # The workspace model's pictures, as its evaluate stage drew them; saved runs come from
    # elsewhere (another commit or machine), so the workspace's pictures would not be theirs.
    for picture in () if args.from_runs else PICTURES:
        source = args.repo / "metrics" / picture
        if source.is_file():
            shutil.copyfile(source, args.out / picture)
        else:
            print(f"report: no {source} (run `dvc repro`): results/{picture} left as it is")
    print(f"report: {len(experiments)} experiments, {len(summaries)} (task, protocol, head) rows -> {args.out}/")


if __name__ == "__main__":
    from fovea.cli import run_stage  # user errors: one line, no traceback

    run_stage(main)
