"""The comparison report: every DVC experiment, grouped by task and head across seeds.

Seeds and val clips are *crossed*: every seed of every head is evaluated on the same val clips of
its task. So each bootstrap replicate draws one clip resample, shared by every seed and every
head of the task, and one resample of the seeds; a head's ratio in a replicate is the pooled
ratio (mean coarse loss over mean fine loss) over the drawn seeds and clips, the same quantity as
its point estimate. Differences from ``film`` are paired on the same draws.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fovea.evaluate import CI_LEVEL
from fovea.evaluate import percentile_interval as interval

EVAL_FILE = "metrics/eval.json"
CLIPS_FILE = "metrics/clips.json"
BASELINE_HEAD = "film"


class ReportError(RuntimeError):
    pass


@dataclass
class Experiment:
    name: str
    rev: str
    params: dict
    metrics: dict
    clips: dict | None = None
    # The workspace's results are this run's (the workspace is listed under the run's name).
    in_workspace: bool = False

    @property
    def head(self) -> str:
        return self.metrics.get("head") or self.params.get("head", "?")

    @property
    def seed(self) -> int:
        return int(self.metrics.get("seed", self.params.get("seed", 0)))

    @property
    def head_options(self) -> str:
        """``heads.<head>`` of the run's params, as sorted JSON ("{}" when unset)."""
        return json.dumps((self.params.get("heads") or {}).get(self.head) or {}, sort_keys=True)

    @property
    def task(self) -> str:
        """``control``, ``negative control`` (the pan), or the source and task of other setups."""
        data = self.params.get("data", {})
        if data.get("source", "synthetic") != "synthetic" or data.get("task", "control") != "control":
            return f"{data.get('source', 'synthetic')}/{data.get('task', '-')}"
        return "negative control" if data.get("motion") == "pan" else "control"


def _dvc_json(repo: Path, *args: str):
    result = subprocess.run([sys.executable, "-m", "dvc", *args, "--json"], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise ReportError(f"dvc {' '.join(args)} failed in {repo}:\n{result.stderr.strip()}")
    return json.loads(result.stdout or "[]")


def _clips_at(repo: Path, rev: str) -> dict | None:
    if rev == "workspace":
        path = repo / CLIPS_FILE
        return json.loads(path.read_text()) if path.is_file() else None
    shown = subprocess.run(["git", "show", f"{rev}:{CLIPS_FILE}"], cwd=repo, capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def read_experiments(repo: Path, commits: int = 1) -> list[Experiment]:
    """The workspace, the last ``commits`` commits and every experiment run on them that has
    eval metrics.

    Entries with identical metrics (the workspace and the run it matches) are kept once, under
    the experiment's name where one has it.
    """
    found: list[Experiment] = []
    seen: dict[str, int] = {}
    for baseline in _dvc_json(repo, "exp", "show", "--num", str(commits)):
        entries = [baseline] + [rev for exp in baseline.get("experiments") or [] for rev in exp.get("revs", [])]
        for entry in entries:
            data = entry.get("data") or {}
            metrics = data.get("metrics", {}).get(EVAL_FILE, {}).get("data")
            if not metrics or entry.get("error"):
                continue
            rev = entry.get("rev", "workspace")
            experiment = Experiment(
                name=entry.get("name") or (rev if rev == "workspace" else rev[:7]),
                rev=rev,
                params=data.get("params", {}).get("params.yaml", {}).get("data", {}),
                metrics=metrics,
                clips=_clips_at(repo, rev),
            )
            fingerprint = json.dumps(metrics, sort_keys=True)
            if fingerprint not in seen:
                seen[fingerprint] = len(found)
                found.append(experiment)
            elif entry.get("name") and found[seen[fingerprint]].rev == "workspace":
                experiment.in_workspace = True
                found[seen[fingerprint]] = experiment
    return found


def save_runs(experiments: list[Experiment], directory: Path) -> None:
    """One JSON file per run (name, rev, params, metrics, per-clip losses): what the report is
    computed from, kept with the results, since DVC keeps experiments only as local refs of the
    commit they ran on."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.json"):
        old.unlink()
    for exp in experiments:
        record = {"name": exp.name, "rev": exp.rev, "params": exp.params, "metrics": exp.metrics, "clips": exp.clips,
                  "in_workspace": exp.in_workspace}
        (directory / f"{exp.name}.json").write_text(json.dumps(record, indent=1) + "\n")


def load_runs(directory: Path) -> list[Experiment]:
    """The runs :func:`save_runs` wrote."""
    files = sorted(Path(directory).glob("*.json"))
    if not files:
        raise ReportError(f"no saved runs in {directory}")
    return [Experiment(**json.loads(path.read_text())) for path in files]


# Params that define what is compared (the task, the head and its options) or replicated (the
# seed); every other param must match for runs to be grouped together.
COMPARED_KEYS = ("head", "heads", "seed")
TASK_KEYS = ("data.motion",)


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def setup_of(exp: Experiment) -> dict[str, object]:
    """The experiment's params other than the task, the head, its options and the seed."""
    flat = _flatten({k: v for k, v in exp.params.items() if k not in COMPARED_KEYS})
    return {k: v for k, v in flat.items() if k not in TASK_KEYS}


def same_setup(experiments: list[Experiment]) -> tuple[list[Experiment], list[tuple[Experiment, str]]]:
    """Keep the experiments whose setup matches the reference one (the workspace's when it has
    results, else the most common); return the others with how they differ."""
    if not experiments:
        return [], []
    setups = [setup_of(exp) for exp in experiments]
    keys = [json.dumps(setup, sort_keys=True, default=str) for setup in setups]
    workspace = [key for exp, key in zip(experiments, keys) if exp.rev == "workspace" or exp.in_workspace]
    reference_key = workspace[0] if workspace else max(set(keys), key=keys.count)
    reference = setups[keys.index(reference_key)]
    kept, left_out = [], []
    for exp, theirs, key in zip(experiments, setups, keys):
        if key == reference_key:
            kept.append(exp)
            continue
        diffs = sorted(k for k in set(theirs) | set(reference)
                       if json.dumps(theirs.get(k), default=str) != json.dumps(reference.get(k), default=str))
        left_out.append((exp, ", ".join(f"{k}={theirs.get(k)!r}" for k in diffs[:4]) + (" ..." if len(diffs) > 4 else "")))
    return kept, left_out


# ------------------------------------------------------------------------------------- stats
@dataclass
class CrossedDraws:
    """Bootstrap draws for one task: clip resamples [samples, clips] shared by every run, and
    uniform numbers [samples, seeds] from which every set of runs draws its seed resample."""

    clips: np.ndarray
    uniform: np.ndarray

    @classmethod
    def make(cls, num_clips: int, num_seeds: int, samples: int, rng: np.random.Generator) -> "CrossedDraws":
        return cls(rng.integers(0, num_clips, size=(samples, num_clips)), rng.random((samples, num_seeds)))

    def seeds(self, count: int) -> np.ndarray:
        """A resample of ``count`` seeds (positions 0..count-1) per replicate: [samples, count].
        Runs with the same number of seeds get the same draws, so their differences are paired."""
        return np.floor(self.uniform[:, :count] * count).astype(int)


def pooled_ratio(fine: np.ndarray, coarse: np.ndarray) -> float:
    """Mean coarse loss over mean fine loss of per-clip losses [seeds, clips]."""
    return float(coarse.mean() / fine.mean())


def crossed_bootstrap_ratios(fine: np.ndarray, coarse: np.ndarray, draws: CrossedDraws) -> np.ndarray:
    """Pooled ratio in every replicate: per-clip losses [seeds, clips] -> [samples].

    The clip draw is applied to every seed alike (seeds see the same clips), then the seed draw
    picks which seeds' rows enter the replicate.
    """
    # Per-seed sums over the drawn clips: [samples, seeds]; then summed over the drawn seeds.
    fine_sums = fine[:, draws.clips].sum(axis=-1).T
    coarse_sums = coarse[:, draws.clips].sum(axis=-1).T
    seeds = draws.seeds(len(fine))
    rows = np.arange(len(seeds))[:, None]
    return coarse_sums[rows, seeds].sum(axis=1) / fine_sums[rows, seeds].sum(axis=1)


def _losses(runs: list[Experiment]) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip fine and coarse losses of runs on the same clips: two [seeds, clips] arrays."""
    return (np.asarray([run.clips["loss_fine"] for run in runs]),
            np.asarray([run.clips["loss_coarse"] for run in runs]))


# A head is read only where it clearly uses h and beats copying in every seed; otherwise the
# experiment cannot tell "this head does not help" from "this setup shows nothing".
def has_signal(runs: list[Experiment]) -> bool:
    return all(
        run.metrics.get("copy_gap_ci_low", 0.0) > 0 and run.metrics.get("h_shuffle_gap_ci_low", 0.0) > 0
        for run in runs
    )


@dataclass
class HeadSummary:
    task: str
    head: str
    runs: list[Experiment]
    ratio: float
    ratio_ci: tuple[float, float] | None
    diff_vs_film: float | None = None
    diff_ci: tuple[float, float] | None = None
    means: dict[str, float] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(run.seed for run in self.runs)

    def above_one(self) -> str:
        if self.ratio_ci is None:
            return "n/a"
        if self.ratio_ci[0] > 1.0:
            return "yes"
        return "no (below 1)" if self.ratio_ci[1] < 1.0 else "no effect (interval includes 1)"

    def verdict(self) -> str:
        if not has_signal(self.runs):
            return "no signal in this setup (copy gap or h-shuffle gap not clearly above 0)"
        if self.ratio_ci is None:
            return "no interval (per-clip losses missing)"
        looking = {"yes": "looking helps", "no (below 1)": "looking hurts"}.get(
            self.above_one(), "no effect of looking")
        if self.head == BASELINE_HEAD or self.diff_ci is None:
            return looking
        if self.diff_ci[0] > 0:
            return f"{looking}; beats film"
        if self.diff_ci[1] < 0:
            return f"{looking}; below film"
        return f"{looking}; not distinguishable from film"

    def as_row(self) -> dict:
        return {
            "head": self.head,
            "task": self.task,
            "seeds": self.seeds,
            "ratio": self.ratio,
            "ratio_ci": list(self.ratio_ci) if self.ratio_ci else None,
            "diff_vs_film": self.diff_vs_film,
            "diff_vs_film_ci": list(self.diff_ci) if self.diff_ci else None,
            "h_shuffle_gap": self.means.get("h_shuffle_gap"),
            "copy_gap": self.means.get("copy_gap"),
            "verdict": self.verdict(),
            "signal": has_signal(self.runs),
            "runs": [run.name for run in self.runs],
            **{key: value for key, value in self.means.items() if key not in ("h_shuffle_gap", "copy_gap")},
        }


MEAN_KEYS = ("loss_fine", "loss_coarse", "ratio_all_frames", "copy_loss", "fine_win_rate", "copy_gap",
             "copy_gap_ci_low", "h_shuffle_gap", "h_shuffle_gap_ci_low", "val_train_gap", "head_params",
             "train_steps", "num_clips")


def summarize_heads(experiments: list[Experiment], samples: int = 2000, seed: int = 0) -> list[HeadSummary]:
    """One summary per (task, head), baseline first within each task; intervals from crossed
    draws shared by every head of the task."""
    # Runs of one head with other options are another arm, not more seeds of the same one: where a
    # head has several option sets, each is labelled with its options.
    option_sets: dict[str, set[str]] = defaultdict(set)
    for exp in experiments:
        option_sets[exp.head].add(exp.head_options)

    def label(exp: Experiment) -> str:
        return exp.head if len(option_sets[exp.head]) == 1 else f"{exp.head} {exp.head_options}"

    by_task: dict[str, dict[str, dict[int, Experiment]]] = defaultdict(lambda: defaultdict(dict))
    for exp in experiments:
        by_task[exp.task][label(exp)].setdefault(exp.seed, exp)  # one run per (head, seed): the first listed
    rng = np.random.default_rng(seed)
    summaries: list[HeadSummary] = []
    for task in sorted(by_task, key=lambda name: (name != "control", name)):
        by_head = by_task[task]
        with_clips = [run for runs in by_head.values() for run in runs.values() if run.clips]
        keys = with_clips[0].clips["keys"] if with_clips else None
        comparable = keys is not None and all(run.clips["keys"] == keys for run in with_clips)
        seeds = sorted({s for runs in by_head.values() for s in runs})
        draws = CrossedDraws.make(len(keys), len(seeds), samples, rng) if comparable else None
        film_runs = by_head.get(BASELINE_HEAD, {})
        for head in sorted(by_head, key=lambda name: (name != BASELINE_HEAD, name)):
            runs = [by_head[head][s] for s in sorted(by_head[head])]
            # Means over seeds; the lower ends of per-run intervals as their minimum, which is what
            # the verdict rule reads.
            means = {key: float((np.min if key.endswith("_ci_low") else np.mean)(
                         [run.metrics[key] for run in runs if key in run.metrics]))
                     for key in MEAN_KEYS if any(key in run.metrics for run in runs)}
            if not (comparable and all(run.clips for run in runs)):
                ratio = float(np.mean([run.metrics["ratio"] for run in runs]))
                summaries.append(HeadSummary(task, head, runs, ratio, None, means=means))
                continue
            summary = HeadSummary(task, head, runs, pooled_ratio(*_losses(runs)), None, means=means)
            summary.ratio_ci = interval(crossed_bootstrap_ratios(*_losses(runs), draws))
            shared = sorted(set(film_runs) & set(by_head[head]))
            if head != BASELINE_HEAD and shared and all(film_runs[s].clips for s in shared):
                mine = [by_head[head][s] for s in shared]
                film = [film_runs[s] for s in shared]
                summary.diff_vs_film = pooled_ratio(*_losses(mine)) - pooled_ratio(*_losses(film))
                summary.diff_ci = interval(crossed_bootstrap_ratios(*_losses(mine), draws)
                                           - crossed_bootstrap_ratios(*_losses(film), draws))
            summaries.append(summary)
    return summaries


# ---------------------------------------------------------------------------------- markdown
def _fmt_ci(value: float | None, ci: tuple[float, float] | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def comparison_json(summaries: list[HeadSummary]) -> dict:
    return {"ci_level": CI_LEVEL, "rows": [summary.as_row() for summary in summaries]}


def comparison_markdown(summaries: list[HeadSummary], left_out: list[tuple[Experiment, str]] = ()) -> str:
    lines = [
        "# Prediction heads: fine/coarse ratio on held-out clips",
        "",
        "Written by `python stages/report.py` from every DVC experiment (`dvc exp show`).",
        "ratio = loss_coarse / loss_fine on the val split (frames 3..T, where the passes can differ),",
        "pooled over seeds and clips; > 1 means the fine pass's read helps. Intervals are 95%",
        "crossed-bootstrap intervals (one clip resample shared by every seed and head of a task, and a",
        "seed resample); the difference from film is paired on the same draws.",
        "",
        "| task | head | seeds | steps | params | ratio [95% CI] | ratio > 1? | ratio - film [95% CI] | "
        "copy gap | h-shuffle gap | fine win rate | val/train gap | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        m = s.means
        diff = "baseline" if s.head == BASELINE_HEAD else _fmt_ci(s.diff_vs_film, s.diff_ci)
        lines.append(
            f"| {s.task} | {s.head} | {', '.join(map(str, s.seeds))} | {int(m.get('train_steps', 0))} | "
            f"{int(m.get('head_params', 0)):,} | {_fmt_ci(s.ratio, s.ratio_ci)} | {s.above_one()} | {diff} | "
            f"{_fmt(m.get('copy_gap'))} | {_fmt(m.get('h_shuffle_gap'))} | {_fmt(m.get('fine_win_rate'), 3)} | "
            f"{_fmt(m.get('val_train_gap'), 2)} | {s.verdict()} |"
        )
    lines += [
        "",
        "Columns:",
        "- copy gap: loss of copying the previous latent minus the fine loss (frames 3..T); <= 0 means",
        "  the head does no better than copying.",
        "- h-shuffle gap: fine loss with another clip's h minus the fine loss; about 0 means the head",
        "  ignores h.",
        "- fine win rate: share of val clips whose fine loss is below their coarse loss.",
        "- val/train gap: (val fine loss - train fine loss) / train fine loss, on as many training clips;",
        "  about 0 when nothing was memorised.",
        "- verdict: given only where, in every seed, the copy-gap and h-shuffle-gap intervals lie above 0;",
        "  otherwise \"no signal in this setup\". \"looking helps\": the ratio interval lies above 1;",
        "  \"beats film\": the paired difference interval lies above 0.",
        "",
        "Runs:",
        "",
        "| experiment | task | head | seed | ratio | num clips |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        for run in s.runs:
            lines.append(f"| {run.name} | {s.task} | {s.head} | {run.seed} | {run.metrics['ratio']:.4f} | "
                         f"{int(run.metrics.get('num_clips', 0))} |")
    if left_out:
        lines += ["", "Left out: runs whose other params differ from the compared setup:", ""]
        lines += [f"- {exp.name} ({exp.head}, seed {exp.seed}): {diff}" for exp, diff in left_out]
    return "\n".join(lines) + "\n"
