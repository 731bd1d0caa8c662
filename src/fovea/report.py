"""The comparison report: every DVC experiment, grouped by head across seeds.

Intervals come from a two-level bootstrap (resample seeds, then val clips within each seed), so
they carry both seed-to-seed and clip-to-clip spread. Differences from ``film`` are paired: the
same seeds and the same val clips are resampled for both heads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EVAL_FILE = "metrics/eval.json"
CLIPS_FILE = "metrics/clips.json"
BASELINE_HEAD = "film"
# The proposal's success criteria for a head's ratio.
THRESHOLDS = {"improvement": 1.17, "significant": 1.25}


class ReportError(RuntimeError):
    pass


@dataclass
class Experiment:
    name: str
    rev: str
    params: dict
    metrics: dict
    clips: dict | None = None

    @property
    def head(self) -> str:
        return self.metrics.get("head") or self.params.get("head", "?")

    @property
    def seed(self) -> int:
        return int(self.metrics.get("seed", self.params.get("seed", 0)))


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


def read_experiments(repo: Path) -> list[Experiment]:
    """The workspace, its baseline commit and every experiment that has eval metrics.

    Entries with identical metrics (the workspace and the commit it matches) are kept once.
    """
    found: list[Experiment] = []
    seen: set[str] = set()
    for baseline in _dvc_json(repo, "exp", "show"):
        entries = [baseline] + [rev for exp in baseline.get("experiments") or [] for rev in exp.get("revs", [])]
        for entry in entries:
            data = entry.get("data") or {}
            metrics = data.get("metrics", {}).get(EVAL_FILE, {}).get("data")
            if not metrics or entry.get("error"):
                continue
            fingerprint = json.dumps(metrics, sort_keys=True)
            if fingerprint in seen:
                continue
            seen.add(fingerprint)
            rev = entry.get("rev", "workspace")
            found.append(
                Experiment(
                    name=entry.get("name") or (rev if rev == "workspace" else rev[:7]),
                    rev=rev,
                    params=data.get("params", {}).get("params.yaml", {}).get("data", {}),
                    metrics=metrics,
                    clips=_clips_at(repo, rev),
                )
            )
    return found


# Params that define what is compared (the head and its options) or replicated (the seed); every
# other param must match for runs to be grouped together.
COMPARED_KEYS = ("head", "heads", "seed")


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def setup_of(exp: Experiment) -> dict[str, object]:
    """The experiment's params other than the head, its options and the seed."""
    return _flatten({k: v for k, v in exp.params.items() if k not in COMPARED_KEYS})


def same_setup(experiments: list[Experiment]) -> tuple[list[Experiment], list[tuple[Experiment, str]]]:
    """Keep the experiments whose setup matches the reference one (the workspace's when it has
    results, else the most common); return the others with how they differ."""
    if not experiments:
        return [], []
    setups = [setup_of(exp) for exp in experiments]
    keys = [json.dumps(setup, sort_keys=True, default=str) for setup in setups]
    workspace = [key for exp, key in zip(experiments, keys) if exp.rev == "workspace"]
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
def _clip_arrays(exp: Experiment) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(exp.clips["loss_fine"]), np.asarray(exp.clips["loss_coarse"])


def bootstrap_ratios(runs: list[Experiment], samples: int, rng: np.random.Generator,
                     clip_picks: list[np.ndarray] | None = None, seed_picks: np.ndarray | None = None) -> np.ndarray:
    """Ratio of pooled means for ``samples`` draws of (seeds, then clips within each seed)."""
    arrays = [_clip_arrays(run) for run in runs]
    if seed_picks is None:
        seed_picks = rng.integers(0, len(runs), size=(samples, len(runs)))
    if clip_picks is None:
        clip_picks = [rng.integers(0, len(fine), size=(samples, len(fine))) for fine, _ in arrays]
    fine_sum = np.zeros(samples)
    coarse_sum = np.zeros(samples)
    for slot in range(len(runs)):
        for index, (fine, coarse) in enumerate(arrays):
            chosen = seed_picks[:, slot] == index
            fine_sum[chosen] += fine[clip_picks[index][chosen]].mean(axis=1)
            coarse_sum[chosen] += coarse[clip_picks[index][chosen]].mean(axis=1)
    return coarse_sum / fine_sum


def _interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class HeadSummary:
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

    def verdict(self) -> str:
        low = self.ratio_ci[0] if self.ratio_ci else None
        for label in ("significant", "improvement"):
            bar = THRESHOLDS[label]
            if self.ratio > bar:
                sure = low is not None and low > bar
                return f"{label} (ratio > {bar}{', interval clears it' if sure else ', interval does not clear it'})"
        return f"no improvement (ratio <= {THRESHOLDS['improvement']})"

    def above_one(self) -> str:
        if self.ratio_ci is None:
            return "n/a"
        if self.ratio_ci[0] > 1.0:
            return "yes"
        return "no (below 1)" if self.ratio_ci[1] < 1.0 else "not sure"


def summarize_heads(experiments: list[Experiment], samples: int = 2000, seed: int = 0) -> list[HeadSummary]:
    by_head: dict[str, dict[int, Experiment]] = defaultdict(dict)
    for exp in experiments:
        by_head[exp.head].setdefault(exp.seed, exp)  # one run per (head, seed): the first listed
    rng = np.random.default_rng(seed)
    summaries = []
    for head in sorted(by_head, key=lambda name: (name != BASELINE_HEAD, name)):
        runs = [by_head[head][s] for s in sorted(by_head[head])]
        ratio = float(np.mean([run.metrics["ratio"] for run in runs]))
        ci = _interval(bootstrap_ratios(runs, samples, rng)) if all(run.clips for run in runs) else None
        means = {
            key: float(np.mean([run.metrics[key] for run in runs if key in run.metrics]))
            for key in ("fine_win_rate", "copy_gap", "h_shuffle_gap", "h_zero_gap", "head_params", "train_steps")
            if any(key in run.metrics for run in runs)
        }
        summaries.append(HeadSummary(head, runs, ratio, ci, means=means))
    _add_paired_differences(summaries, by_head, samples, rng)
    return summaries


def _add_paired_differences(summaries: list[HeadSummary], by_head: dict[str, dict[int, Experiment]],
                            samples: int, rng: np.random.Generator) -> None:
    """Head minus film, on the seeds both have, resampling the same seeds and clips for both."""
    film = by_head.get(BASELINE_HEAD, {})
    for summary in summaries:
        if summary.head == BASELINE_HEAD:
            continue
        seeds = sorted(set(film) & set(by_head[summary.head]))
        pairs = [(film[s], by_head[summary.head][s]) for s in seeds]
        pairs = [(a, b) for a, b in pairs if a.clips and b.clips and a.clips["keys"] == b.clips["keys"]]
        if not pairs:
            continue
        baseline_runs, head_runs = [a for a, _ in pairs], [b for _, b in pairs]
        summary.diff_vs_film = float(np.mean([b.metrics["ratio"] - a.metrics["ratio"] for a, b in pairs]))
        seed_picks = rng.integers(0, len(pairs), size=(samples, len(pairs)))
        clip_picks = [rng.integers(0, len(a.clips["keys"]), size=(samples, len(a.clips["keys"]))) for a in baseline_runs]
        diffs = bootstrap_ratios(head_runs, samples, rng, clip_picks, seed_picks) - bootstrap_ratios(
            baseline_runs, samples, rng, clip_picks, seed_picks)
        summary.diff_ci = _interval(diffs)


# ---------------------------------------------------------------------------------- markdown
def _fmt_ci(value: float | None, ci: tuple[float, float] | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def comparison_markdown(summaries: list[HeadSummary], left_out: list[tuple[Experiment, str]] = ()) -> str:
    lines = [
        "# Prediction heads: fine/coarse ratio on held-out clips",
        "",
        "Written by `python stages/report.py` from every DVC experiment (`dvc exp show`).",
        "ratio = loss_coarse / loss_fine on the val split; > 1 means the model's own choice of where",
        "to look helps. Intervals are 95% bootstrap intervals over seeds and val clips; the",
        "difference from film is paired (same seeds, same clips).",
        "",
        "| head | seeds | steps | params | ratio [95% CI] | ratio > 1? | fine win rate | copy gap | "
        "h-shuffle gap | h-zero gap | ratio - film [95% CI] | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        m = s.means
        diff = "baseline" if s.head == BASELINE_HEAD else _fmt_ci(s.diff_vs_film, s.diff_ci)
        lines.append(
            f"| {s.head} | {', '.join(map(str, s.seeds))} | {int(m.get('train_steps', 0))} | "
            f"{int(m.get('head_params', 0)):,} | {_fmt_ci(s.ratio, s.ratio_ci)} | {s.above_one()} | "
            f"{_fmt(m.get('fine_win_rate'), 3)} | {_fmt(m.get('copy_gap'))} | {_fmt(m.get('h_shuffle_gap'))} | "
            f"{_fmt(m.get('h_zero_gap'))} | {diff} | {s.verdict()} |"
        )
    lines += [
        "",
        "Columns:",
        "- fine win rate: share of val clips whose fine loss is below their coarse loss.",
        "- copy gap: loss of copying the previous latent minus the fine loss (frames 2..T); <= 0 means",
        "  the head does no better than copying.",
        "- h-shuffle gap / h-zero gap: fine loss with another clip's h / with h = 0, minus the fine loss;",
        "  about 0 means the head ignores h.",
        f"- verdict: the proposal's criteria, ratio > {THRESHOLDS['improvement']} = improvement, "
        f"> {THRESHOLDS['significant']} = significant; whether the interval's lower end clears the bar too.",
        "",
        "Runs:",
        "",
        "| experiment | head | seed | ratio | num clips |",
        "|---|---|---|---|---|",
    ]
    for s in summaries:
        for run in s.runs:
            lines.append(f"| {run.name} | {s.head} | {run.seed} | {run.metrics['ratio']:.4f} | "
                         f"{int(run.metrics.get('num_clips', 0))} |")
    if left_out:
        lines += ["", "Left out: runs whose other params differ from the compared setup:", ""]
        lines += [f"- {exp.name} ({exp.head}, seed {exp.seed}): {diff}" for exp, diff in left_out]
    return "\n".join(lines) + "\n"
