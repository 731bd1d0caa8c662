"""The comparison report: every DVC experiment, grouped by task, protocol and head across seeds.

Seeds and val clips are *crossed*: every seed of every head is evaluated on the same val clips of
its task. So each bootstrap replicate (``fovea.stats.CrossedDraws``) draws one clip resample,
shared by every seed and every head of the task, and one resample of the seeds; a head's ratio in
a replicate is the pooled ratio (mean coarse loss over mean fine loss, frames 3..T) over the drawn
seeds and clips, the same estimator as its point estimate. Differences from ``film`` are paired
on the same draws.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from fovea.experiments import Experiment
from fovea.stats import (
    CrossedDraws,
    finite_interval,
    percentile_interval,
    pooled_ratio,
    seed_t_interval,
    share_of_gap,
    share_of_gap_replicates,
    widest,
)

BASELINE_HEAD = "film"


# Params that define what is compared (the task, the head and its options) or replicated (the
# seed); every other param must match for runs to be grouped together.
COMPARED_KEYS = ("head", "heads", "seed")
# The objective and the target name the task ("control/joint", "control/dino": Experiment.task).
TASK_KEYS = ("data.motion", "train.lambda_coarse", "train.objective", "target")


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
    results, else the most common); return the others with how they differ. Runs whose metrics
    predate ``ratio_late`` (older code) are left out too."""
    outdated = [
        (exp, "metrics from older code (no ratio_late): rerun it")
        for exp in experiments
        if "ratio_late" not in exp.metrics
    ]
    experiments = [exp for exp in experiments if "ratio_late" in exp.metrics]
    if not experiments:
        return [], outdated
    setups = [setup_of(exp) for exp in experiments]
    keys = [json.dumps(setup, sort_keys=True, default=str) for setup in setups]
    workspace = [key for exp, key in zip(experiments, keys, strict=False) if exp.rev == "workspace" or exp.in_workspace]
    reference_key = workspace[0] if workspace else max(set(keys), key=keys.count)
    reference = setups[keys.index(reference_key)]
    kept, left_out = [], []
    for exp, theirs, key in zip(experiments, setups, keys, strict=False):
        if key == reference_key:
            kept.append(exp)
            continue
        diffs = sorted(
            k
            for k in set(theirs) | set(reference)
            if json.dumps(theirs.get(k), default=str) != json.dumps(reference.get(k), default=str)
        )
        left_out.append(
            (exp, ", ".join(f"{k}={theirs.get(k)!r}" for k in diffs[:4]) + (" ..." if len(diffs) > 4 else ""))
        )
    return kept, outdated + left_out


# ------------------------------------------------------------------------------------- stats
def _losses(runs: list[Experiment], name: str) -> np.ndarray:
    """Per-clip losses ``name`` of runs on the same clips: [seeds, clips]."""
    return np.asarray([run.clips[name] for run in runs])


def _ratio_draws(runs: list[Experiment], draws: CrossedDraws) -> np.ndarray:
    return draws.ratios(_losses(runs, "loss_coarse"), _losses(runs, "loss_fine"))


def _seed_ratios(runs: list[Experiment]) -> np.ndarray:
    """Each run's pooled ratio over its clips: [seeds]."""
    return _losses(runs, "loss_coarse").sum(axis=1) / _losses(runs, "loss_fine").sum(axis=1)


def _ratio(runs: list[Experiment]) -> float:
    return pooled_ratio(_losses(runs, "loss_coarse"), _losses(runs, "loss_fine"))


# A head is read only where it clearly uses what is specific to the clip in h and beats copying,
# in every seed; otherwise the experiment cannot tell "this head does not help" from "this setup
# shows nothing".
SIGNAL_KEYS = ("copy_gap_ci_low", "h_mean_gap_ci_low")


def has_signal(runs: list[Experiment]) -> bool:
    return all(run.metrics.get(key, 0.0) > 0 for run in runs for key in SIGNAL_KEYS)


# The proposal's success criteria: film's ~1.17 came from joint caption + reconstruction training
# with the fine loss only, measured on training batches (mean of the last 100 steps), so they are
# set only beside runs of that protocol and on that measurement (``train_ratio_last100``).
PROPOSAL_FILM_RATIO = 1.17
PROPOSAL_SIGNIFICANT_RATIO = 1.25
PROPOSAL_SIGNIFICANT_HEADS = ("xattn", "stx")


@dataclass
class HeadSummary:
    task: str
    protocol: str
    head: str
    runs: list[Experiment]
    ratio: float
    ratio_ci: tuple[float, float] | None
    diff_vs_film: float | None = None
    diff_ci: tuple[float, float] | None = None
    fovea_gain: float | None = None
    fovea_gain_ci: tuple[float, float] | None = None
    means: dict[str, float] = field(default_factory=dict)
    # Why there is no interval, where there is none.
    no_interval: str | None = None

    @property
    def seeds(self) -> list[int]:
        return sorted(run.seed for run in self.runs)

    @property
    def is_baseline(self) -> bool:
        return self.head == BASELINE_HEAD

    def above_one(self) -> str:
        if self.ratio_ci is None:
            return "n/a"
        if self.ratio_ci[0] > 1.0:
            return "yes"
        return "no (below 1)" if self.ratio_ci[1] < 1.0 else "no effect (interval includes 1)"

    def against_film(self) -> str:
        """The primary verdict: the paired difference from film under the same task and protocol."""
        if self.is_baseline:
            return "baseline"
        if self.diff_ci is None:
            return self.no_interval or "no paired film runs"
        if self.diff_ci[0] > 0:
            return "better than film"
        if self.diff_ci[1] < 0:
            return "worse than film"
        return "no difference from film"

    def verdict(self) -> str:
        verdict = self.against_film()
        if not has_signal(self.runs):
            verdict += "; no signal in this setup (copy gap or h-mean gap not clearly above 0 in every seed)"
        return verdict

    def proposal_criterion(self) -> str | None:
        """The proposal's criterion on the training-batch ratio, for ``fine_only`` runs only."""
        train_ratio = self.means.get("train_ratio_last100")
        if self.protocol != "fine_only" or train_ratio is None:
            return None
        if self.is_baseline:
            return f"proposal's film: ~{PROPOSAL_FILM_RATIO}"
        if self.head in PROPOSAL_SIGNIFICANT_HEADS and train_ratio > PROPOSAL_SIGNIFICANT_RATIO:
            return f"> {PROPOSAL_SIGNIFICANT_RATIO}: significant by the proposal's criterion"
        if train_ratio > PROPOSAL_FILM_RATIO:
            return f"> {PROPOSAL_FILM_RATIO}: improvement by the proposal's criterion"
        return f"<= {PROPOSAL_FILM_RATIO}: no improvement by the proposal's criterion"

    def as_row(self) -> dict:
        return {
            "head": self.head,
            "task": self.task,
            "protocol": self.protocol,
            "seeds": self.seeds,
            # The headline (frames 3..T, pooled), under the names of the first report's format too.
            "ratio": self.ratio,
            "ratio_ci": list(self.ratio_ci) if self.ratio_ci else None,
            "ratio_frames": "3..T",
            "ratio_late": self.ratio,
            "ratio_late_ci": list(self.ratio_ci) if self.ratio_ci else None,
            "diff_vs_film": self.diff_vs_film,
            "diff_vs_film_ci": list(self.diff_ci) if self.diff_ci else None,
            "fovea_gain": self.fovea_gain,
            "fovea_gain_ci": list(self.fovea_gain_ci) if self.fovea_gain_ci else None,
            "verdict": self.verdict(),
            "against_film": self.against_film(),
            "signal": has_signal(self.runs),
            "proposal_criterion": self.proposal_criterion(),
            "runs": [run.name for run in self.runs],
            # the runs' all-frames ratio, renamed so it cannot be taken for the headline
            **{("ratio_all_frames" if key == "ratio" else key): value for key, value in self.means.items()},
        }


# Run metrics shown as the mean over seeds; the lower ends of per-run intervals as their minimum,
# which is what the signal rule reads.
MEAN_KEYS = (
    "loss_fine_late",
    "loss_coarse_late",
    "ratio",
    "copy_loss",
    "fine_win_rate",
    "copy_gap",
    "copy_gap_ci_low",
    "h_mean_gap",
    "h_mean_gap_ci_low",
    "h_shuffle_gap",
    "h_shuffle_gap_ci_low",
    "val_train_gap",
    "train_ratio_last100",
    # the captions' coarse/fine loss ratio (val; and the last 100 training batches under joint)
    "caption_ratio",
    "train_caption_ratio_last100",
    "head_params",
    "train_steps",
    "num_clips",
)


def _means(runs: list[Experiment]) -> dict[str, float]:
    return {
        key: float(
            (np.min if key.endswith("_ci_low") else np.mean)(
                [run.metrics[key] for run in runs if run.metrics.get(key) is not None]
            )
        )
        for key in MEAN_KEYS
        if any(run.metrics.get(key) is not None for run in runs)
    }


def _interval(replicates: np.ndarray) -> tuple[float, float] | None:
    low, high = finite_interval(replicates)
    return None if np.isnan(low) else (low, high)


def summarize_heads(experiments: list[Experiment], samples: int = 2000, seed: int = 0) -> list[HeadSummary]:
    """One summary per (task, protocol, head), baseline first within each; intervals from crossed
    draws shared by every head of the task and protocol."""
    # Runs of one head with other options are another arm, not more seeds of the same one: where a
    # head has several option sets, each is labelled with its options.
    option_sets: dict[str, set[str]] = defaultdict(set)
    for exp in experiments:
        option_sets[exp.head].add(exp.head_options)

    def label(exp: Experiment) -> str:
        return exp.head if len(option_sets[exp.head]) == 1 else f"{exp.head} {exp.head_options}"

    groups: dict[tuple[str, str], dict[str, dict[int, Experiment]]] = defaultdict(lambda: defaultdict(dict))
    for exp in experiments:
        groups[exp.task, exp.protocol][label(exp)].setdefault(exp.seed, exp)  # one run per (head, seed)
    rng = np.random.default_rng(seed)
    summaries: list[HeadSummary] = []
    for task, protocol in sorted(groups, key=lambda key: (key[0] != "control", key)):
        by_head = groups[task, protocol]
        with_clips = [run for runs in by_head.values() for run in runs.values() if run.clips]
        keys = with_clips[0].clips["keys"] if with_clips else None
        comparable = keys is not None and all(run.clips["keys"] == keys for run in with_clips)
        seeds = sorted({s for runs in by_head.values() for s in runs})
        draws = CrossedDraws.make(len(keys), len(seeds), samples, rng) if comparable else None
        film_runs = by_head.get(BASELINE_HEAD, {})
        for head in sorted(by_head, key=lambda name: (name != BASELINE_HEAD, name)):
            runs = [by_head[head][s] for s in sorted(by_head[head])]
            summary = HeadSummary(
                task,
                protocol,
                head,
                runs,
                float(np.mean([r.metrics["ratio_late"] for r in runs])),
                None,
                means=_means(runs),
            )
            summaries.append(summary)
            if not (comparable and all(run.clips for run in runs)):
                # The mean of the runs' ratios, without an interval.
                summary.no_interval = (
                    "no interval: per-clip losses missing"
                    if not all(run.clips for run in runs)
                    else "no interval: the runs of this task were evaluated on different val clips"
                )
                continue
            summary.ratio = _ratio(runs)
            # Spanning both the crossed bootstrap and a t interval over the seeds' own ratios: a
            # bootstrap over a few seeds cannot carry a seed-to-seed spread much larger than the
            # clips' (tests/test_stats.py).
            summary.ratio_ci = widest(
                percentile_interval(_ratio_draws(runs, draws)), seed_t_interval(_seed_ratios(runs))
            )
            # The share of h's worth is defined only where h is worth something in every seed.
            h_worth = all(run.metrics.get("h_mean_gap_ci_low", 0.0) > 0 for run in runs)
            if h_worth and all("loss_h_mean" in run.clips for run in runs):
                losses = [_losses(runs, name) for name in ("loss_coarse", "loss_fine", "loss_h_mean")]
                summary.fovea_gain = share_of_gap(*losses)
                summary.fovea_gain_ci = _interval(share_of_gap_replicates(draws, *losses))
            shared = sorted(set(film_runs) & set(by_head[head]))
            if head != BASELINE_HEAD and shared and all(film_runs[s].clips for s in shared):
                mine = [by_head[head][s] for s in shared]
                film = [film_runs[s] for s in shared]
                summary.diff_vs_film = _ratio(mine) - _ratio(film)
                summary.diff_ci = widest(
                    percentile_interval(_ratio_draws(mine, draws) - _ratio_draws(film, draws)),
                    seed_t_interval(_seed_ratios(mine) - _seed_ratios(film)),
                )
    return summaries
