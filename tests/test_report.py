"""The comparison report's statistics and text, on made-up experiments."""

import numpy as np
import pytest

from fovea.report import Experiment, comparison_markdown, same_setup, summarize_heads


def _experiment(head: str, seed: int, ratio: float, clips: int = 60) -> Experiment:
    rng = np.random.default_rng(seed * 100 + len(head))
    fine = rng.gamma(4.0, 0.05, size=clips)
    coarse = fine * rng.normal(ratio, 0.05, size=clips)
    metrics = {"head": head, "seed": seed, "ratio": float(coarse.mean() / fine.mean()), "num_clips": clips,
               "fine_win_rate": float(np.mean(fine < coarse)), "copy_gap": 0.01, "h_shuffle_gap": 0.02,
               "h_zero_gap": 0.03, "head_params": 1000, "train_steps": 10}
    clips_table = {"keys": [f"clip-{i}" for i in range(clips)], "loss_fine": fine.tolist(),
                   "loss_coarse": coarse.tolist()}
    return Experiment(name=f"{head}-{seed}", rev=f"rev{head}{seed}", params={"head": head, "seed": seed},
                      metrics=metrics, clips=clips_table)


@pytest.fixture(scope="module")
def summaries():
    runs = [_experiment("film", s, 1.0) for s in (0, 1)] + [_experiment("stx", s, 1.4) for s in (0, 1)]
    return summarize_heads(runs, samples=1000, seed=0)


def test_heads_are_grouped_across_seeds_with_intervals(summaries):
    by_head = {s.head: s for s in summaries}
    assert [s.head for s in summaries] == ["film", "stx"]  # baseline first
    assert by_head["stx"].seeds == [0, 1]
    for summary in summaries:
        low, high = summary.ratio_ci
        assert low < summary.ratio < high


def test_paired_difference_and_verdicts(summaries):
    by_head = {s.head: s for s in summaries}
    stx = by_head["stx"]
    assert stx.diff_vs_film == pytest.approx(stx.ratio - by_head["film"].ratio)
    assert stx.diff_ci[0] > 0  # clearly better than film
    assert stx.verdict().startswith("significant") and "interval clears it" in stx.verdict()
    assert stx.above_one() == "yes"
    assert by_head["film"].verdict().startswith("no improvement")
    assert by_head["film"].above_one() == "not sure"


def test_markdown_lists_every_head_and_run(summaries):
    text = comparison_markdown(summaries)
    for name in ("| film |", "| stx |", "film-0", "film-1", "stx-0", "stx-1", "baseline", "significant"):
        assert name in text


def test_runs_with_other_settings_are_left_out_and_named():
    base = [_experiment("film", 0, 1.0), _experiment("stx", 0, 1.2)]
    for exp in base:
        exp.params["train"] = {"steps": 300}
    base[0].rev = "workspace"
    short = _experiment("film", 1, 1.0)
    short.params["train"] = {"steps": 2}
    kept, left_out = same_setup(base + [short])
    assert kept == base
    assert [(exp.name, diff) for exp, diff in left_out] == [("film-1", "train.steps=2")]
    text = comparison_markdown(summarize_heads(kept, samples=200), left_out)
    assert "- film-1 (film, seed 1): train.steps=2" in text
