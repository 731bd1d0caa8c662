"""The comparison report's statistics and text, on made-up experiments with a known truth."""

import numpy as np
import pytest

from fovea.report import (
    CrossedDraws,
    Experiment,
    comparison_json,
    comparison_markdown,
    crossed_bootstrap_ratios,
    interval,
    load_runs,
    pooled_ratio,
    save_runs,
    same_setup,
    summarize_heads,
)

CLIPS = 60


def _experiment(head: str, seed: int, ratio: float, motion: str = "target") -> Experiment:
    """A run whose clips share their difficulty with every other run (seeds and clips crossed)."""
    difficulty = np.random.default_rng(123).gamma(4.0, 0.05, size=CLIPS)
    rng = np.random.default_rng(seed * 100 + len(head))
    fine = difficulty * rng.lognormal(0.0, 0.05, size=CLIPS)
    coarse = fine * rng.normal(ratio, 0.05, size=CLIPS)
    metrics = {"head": head, "seed": seed, "ratio": float(coarse.mean() / fine.mean()), "num_clips": CLIPS,
               "fine_win_rate": float(np.mean(fine < coarse)), "copy_gap": 0.01, "copy_gap_ci_low": 0.005,
               "h_shuffle_gap": 0.02, "h_shuffle_gap_ci_low": 0.01, "head_params": 1000, "train_steps": 10}
    clips_table = {"keys": [f"clip-{i}" for i in range(CLIPS)], "loss_fine": fine.tolist(),
                   "loss_coarse": coarse.tolist()}
    params = {"head": head, "seed": seed, "data": {"source": "synthetic", "task": "control", "motion": motion}}
    return Experiment(name=f"{head}-{motion}-{seed}", rev=f"rev{head}{motion}{seed}", params=params,
                      metrics=metrics, clips=clips_table)


@pytest.fixture(scope="module")
def summaries():
    runs = [_experiment("film", s, 1.0) for s in (0, 1, 2)] + [_experiment("stx", s, 1.4) for s in (0, 1, 2)]
    runs += [_experiment(head, s, 1.0, motion="pan") for head in ("film", "stx") for s in (0, 1, 2)]
    return summarize_heads(runs, samples=1000, seed=0)


def test_rows_are_grouped_by_task_and_head_baseline_first(summaries):
    assert [(s.task, s.head) for s in summaries] == [
        ("control", "film"), ("control", "stx"), ("negative control", "film"), ("negative control", "stx")]
    for summary in summaries:
        assert summary.seeds == [0, 1, 2]
        low, high = summary.ratio_ci
        assert low < summary.ratio < high


def test_point_estimate_is_the_pooled_ratio_the_interval_is_for(summaries):
    stx = summaries[1]
    fine = np.asarray([run.clips["loss_fine"] for run in stx.runs])
    coarse = np.asarray([run.clips["loss_coarse"] for run in stx.runs])
    assert stx.ratio == pytest.approx(coarse.mean() / fine.mean())


def test_paired_difference_and_verdicts(summaries):
    film, stx, neg_film, neg_stx = summaries
    assert stx.diff_vs_film == pytest.approx(stx.ratio - film.ratio)
    assert stx.diff_ci[0] > 0  # clearly better than film
    assert stx.above_one() == "yes" and stx.verdict() == "looking helps; beats film"
    assert film.verdict() == "no effect of looking" and film.above_one().startswith("no effect")
    assert neg_stx.diff_ci[0] < 0 < neg_stx.diff_ci[1]
    assert neg_stx.verdict() == "no effect of looking; not distinguishable from film"


@pytest.mark.parametrize("failing", ["copy_gap_ci_low", "h_shuffle_gap_ci_low"])
def test_no_verdict_when_one_seed_lacks_signal(failing):
    runs = [_experiment("film", s, 1.0) for s in (0, 1)] + [_experiment("stx", s, 1.4) for s in (0, 1)]
    runs[3].metrics[failing] = -0.001  # one seed of stx: that interval reaches below 0
    film, stx = summarize_heads(runs, samples=200)
    assert stx.verdict().startswith("no signal in this setup") and film.verdict() == "no effect of looking"
    assert stx.as_row()["signal"] is False and stx.as_row()[failing] == -0.001  # the minimum over seeds


def test_runs_with_other_head_options_are_another_arm():
    runs = [_experiment("xattn", s, 1.2) for s in (0, 1)] + [_experiment("xattn", 0, 1.0)]
    runs[2].params["heads"] = {"xattn": {"heads": 8}}
    labels = [summary.head for summary in summarize_heads(runs, samples=200)]
    assert labels == ['xattn {"heads": 8}', "xattn {}"]
    # options every run of a head shares do not split it: film stays the baseline
    for run in runs[:2]:
        run.params["heads"] = {"xattn": {"heads": 8}}
    runs[2].params["heads"] = {"xattn": {"heads": 8}}
    film = _experiment("film", 0, 1.0)
    film.params["heads"] = {"film": {"film_hidden": 32}}
    summaries = summarize_heads(runs + [film], samples=200)
    assert [s.head for s in summaries] == ["film", "xattn"] and summaries[1].diff_vs_film is not None


def test_saved_runs_rebuild_the_same_report(tmp_path, summaries):
    runs = [run for summary in summaries for run in summary.runs]
    save_runs(runs, tmp_path / "runs")
    again = summarize_heads(load_runs(tmp_path / "runs"), samples=1000, seed=0)
    assert comparison_json(again) == comparison_json(summaries)


def test_json_rows_carry_the_documented_fields(summaries):
    rows = comparison_json(summaries)["rows"]
    assert len(rows) == 4
    for row in rows:
        for key in ("head", "task", "seeds", "ratio", "ratio_ci", "diff_vs_film", "diff_vs_film_ci",
                    "h_shuffle_gap", "copy_gap", "verdict"):
            assert key in row
        assert len(row["ratio_ci"]) == 2
    assert rows[0]["diff_vs_film"] is None and rows[1]["diff_vs_film_ci"][0] > 0


def test_markdown_lists_every_task_head_and_run(summaries):
    text = comparison_markdown(summaries)
    for name in ("| control | film |", "| control | stx |", "| negative control | stx |", "film-target-0",
                 "stx-pan-2", "baseline", "beats film"):
        assert name in text


def test_runs_with_other_settings_are_left_out_and_named_but_the_task_is_compared():
    base = [_experiment("film", 0, 1.0), _experiment("stx", 0, 1.2), _experiment("stx", 0, 1.0, motion="pan")]
    for exp in base:
        exp.params["train"] = {"steps": 300}
    base[0].rev = "workspace"
    short = _experiment("film", 1, 1.0)
    short.params["train"] = {"steps": 2}
    kept, left_out = same_setup(base + [short])
    assert kept == base
    assert [(exp.name, diff) for exp, diff in left_out] == [("film-target-1", "train.steps=2")]
    text = comparison_markdown(summarize_heads(kept, samples=200), left_out)
    assert "- film-target-1 (film, seed 1): train.steps=2" in text


def test_the_workspaces_setup_is_the_reference_even_under_a_run_name():
    # The workspace holds the last run's results, listed under that run's name: its setup is the
    # one compared, even where more runs share another setup.
    others = [_experiment(head, 0, 1.0) for head in ("film", "stx", "mlp")]
    for exp in others:
        exp.params["train"] = {"steps": 3}
    latest = [_experiment("film", 1, 1.0), _experiment("stx", 1, 1.0)]
    for exp in latest:
        exp.params["train"] = {"steps": 2}
    latest[1].in_workspace = True
    kept, left_out = same_setup(others + latest)
    assert kept == latest and len(left_out) == 3


def test_crossed_draws_share_one_clip_resample_across_seeds():
    # Two seeds with identical losses per clip: a replicate's ratio is then exactly the ratio of
    # one seed on the drawn clips, which it would not be if each seed drew its own clips.
    rng = np.random.default_rng(0)
    fine = rng.gamma(2.0, 1.0, size=(1, 40)).repeat(2, axis=0)
    coarse = fine * rng.uniform(0.5, 1.5, size=(1, 40))
    draws = CrossedDraws.make(40, 2, 50, rng)
    expected = coarse[0, draws.clips].sum(axis=1) / fine[0, draws.clips].sum(axis=1)
    np.testing.assert_allclose(crossed_bootstrap_ratios(fine, coarse, draws), expected)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_seed_resamples_are_uniform_for_any_number_of_seeds(count):
    draws = CrossedDraws.make(10, 3, 60000, np.random.default_rng(0))
    picks = draws.seeds(count)
    assert picks.shape == (60000, count) and picks.min() == 0 and picks.max() == count - 1
    np.testing.assert_allclose(np.bincount(picks.ravel()) / picks.size, 1 / count, atol=0.01)
    if count == 2:  # both draws the same seed half the time, as with replacement
        assert np.mean(picks[:, 0] == picks[:, 1]) == pytest.approx(0.5, abs=0.01)


def test_a_head_missing_a_seed_is_paired_with_film_on_the_seeds_both_have():
    runs = [_experiment("film", s, 1.0) for s in (0, 1, 2)] + [_experiment("stx", s, 1.3) for s in (0, 2)]
    film, stx = summarize_heads(runs, samples=2000, seed=0)
    assert stx.seeds == [0, 2]
    low, high = stx.ratio_ci
    assert low < stx.ratio < high
    film_on_shared = [run for run in film.runs if run.seed in (0, 2)]
    expected = stx.ratio - pooled_ratio(*(np.asarray([r.clips[k] for r in film_on_shared])
                                          for k in ("loss_fine", "loss_coarse")))
    assert stx.diff_vs_film == pytest.approx(expected)
    assert stx.diff_ci[0] < stx.diff_vs_film < stx.diff_ci[1]


def _simulate(rng: np.random.Generator, seeds: int, clips: int, truth: float, seed_sd: float, clip_sd: float,
              noise_sd: float, ratio_sd: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip losses [seeds, clips] of a crossed design whose population ratio is ``truth``.

    Clip difficulty and each clip's own coarse/fine ratio (mean-one factor w_c) are shared by all
    seeds, as when every seed is evaluated on the same clips; each seed shifts its losses (log
    scale) and every (seed, clip) cell has its own noise. With w independent of the rest,
    E[coarse] / E[fine] = truth exactly.
    """
    difficulty = rng.lognormal(0.0, clip_sd, size=clips)
    clip_ratio = np.exp(ratio_sd * rng.standard_normal(clips) - ratio_sd**2 / 2)

    def losses() -> np.ndarray:
        return (difficulty * rng.lognormal(0.0, seed_sd, size=(seeds, 1))
                * rng.lognormal(0.0, noise_sd, size=(seeds, clips)))

    return losses(), truth * clip_ratio * losses()


def _nested_bootstrap_ratios(fine: np.ndarray, coarse: np.ndarray, samples: int, rng) -> np.ndarray:
    """The report's former bootstrap: resample seeds, then each seed's clips on its own."""
    seeds, clips = fine.shape
    seed_picks = rng.integers(0, seeds, size=(samples, seeds))
    clip_picks = [rng.integers(0, clips, size=(samples, clips)) for _ in range(seeds)]
    fine_sum, coarse_sum = np.zeros(samples), np.zeros(samples)
    for slot in range(seeds):
        for index in range(seeds):
            chosen = seed_picks[:, slot] == index
            fine_sum[chosen] += fine[index][clip_picks[index][chosen]].mean(axis=1)
            coarse_sum[chosen] += coarse[index][clip_picks[index][chosen]].mean(axis=1)
    return coarse_sum / fine_sum


def _coverage(seeds: int, seed_sd: float, noise_sd: float, nested: bool = False, trials: int = 600) -> float:
    rng = np.random.default_rng(7)
    truth, covered = 1.1, 0
    for _ in range(trials):
        fine, coarse = _simulate(rng, seeds, clips=60, truth=truth, seed_sd=seed_sd, clip_sd=0.6, noise_sd=noise_sd)
        if nested:
            replicates = _nested_bootstrap_ratios(fine, coarse, 400, rng)
        else:
            replicates = crossed_bootstrap_ratios(fine, coarse, CrossedDraws.make(60, seeds, 400, rng))
        low, high = interval(replicates)
        covered += low <= truth <= high
        assert low <= pooled_ratio(fine, coarse) <= high
    return covered / trials


@pytest.mark.parametrize("seeds,seed_sd,noise_sd", [(3, 0.005, 0.05), (5, 0.01, 0.05)])
def test_crossed_interval_covers_the_truth_95_percent_and_the_nested_one_does_not(seeds, seed_sd, noise_sd):
    # Clips dominate: film and sfilm in the control sweep (per-seed spread ~1x the clip spread).
    # 600 trials of a true 95% give 0.933..0.967 about 95% of the time; a percentile interval of
    # a ratio over 60 clips covers a little less than nominal (measured 0.93-0.94 here).
    coverage = _coverage(seeds, seed_sd, noise_sd)
    assert 0.90 <= coverage <= 0.98, f"crossed coverage {coverage:.3f}"
    # Resampling each seed's clips on its own treats shared clip effects as independent: too narrow.
    nested = _coverage(seeds, seed_sd, noise_sd, nested=True)
    assert nested < 0.90, f"nested coverage {nested:.3f}"


@pytest.mark.xfail(strict=True, reason="known limit (README): three seeds cannot carry a large seed-to-seed "
                                       "spread into the interval; passes once the report has a seed-level interval")
def test_with_three_seeds_and_large_seed_effects_the_interval_still_covers():
    # mlp, stx and xattn in the control sweep: per-seed ratios spread 6-21x the clip spread.
    assert _coverage(3, 0.1, 0.05) >= 0.90
