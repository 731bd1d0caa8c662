"""The comparison report's statistics and text, on made-up experiments with a known truth."""

from pathlib import Path

import numpy as np
import pytest

from fovea.experiments import Experiment, load_runs, save_runs
from fovea.report import same_setup, summarize_heads
from fovea.report_text import comparison_json, comparison_markdown
from fovea.stats import pooled_ratio

CLIPS = 60


def _experiment(
    head: str, seed: int, ratio: float, motion: str = "target", protocol: str = "both_passes"
) -> Experiment:
    """A run whose clips share their difficulty with every other run (seeds and clips crossed)."""
    difficulty = np.random.default_rng(123).gamma(4.0, 0.05, size=CLIPS)
    rng = np.random.default_rng(seed * 100 + len(head))
    fine = difficulty * rng.lognormal(0.0, 0.05, size=CLIPS)
    coarse = fine * rng.normal(ratio, 0.05, size=CLIPS)
    # h is worth 0.1 of the fine loss: the val-mean h loses that much more than the clip's own
    h_mean = fine * 1.1
    metrics = {
        "head": head,
        "seed": seed,
        "ratio_late": float(coarse.mean() / fine.mean()),
        "ratio": 1.0,
        "num_clips": CLIPS,
        "fine_win_rate": float(np.mean(fine < coarse)),
        "copy_gap": 0.01,
        "copy_gap_ci_low": 0.005,
        "h_mean_gap": 0.02,
        "h_mean_gap_ci_low": 0.01,
        "h_shuffle_gap": 0.02,
        "h_shuffle_gap_ci_low": 0.01,
        "head_params": 1000,
        "train_steps": 10,
        "protocol": protocol,
        "train_ratio_last100": ratio,
    }
    clips_table = {
        "keys": [f"clip-{i}" for i in range(CLIPS)],
        "loss_fine": fine.tolist(),
        "loss_coarse": coarse.tolist(),
        "loss_h_mean": h_mean.tolist(),
    }
    params = {
        "head": head,
        "seed": seed,
        "data": {"source": "synthetic", "task": "control", "motion": motion},
        "train": {"lambda_coarse": 0.0 if protocol == "fine_only" else 1.0},
    }
    suffix = "" if protocol == "both_passes" else f"-{protocol}"
    return Experiment(
        name=f"{head}-{motion}-{seed}{suffix}",
        rev=f"rev{head}{motion}{seed}{suffix}",
        params=params,
        metrics=metrics,
        clips=clips_table,
    )


@pytest.fixture(scope="module")
def summaries():
    runs = [_experiment("film", s, 1.0) for s in (0, 1, 2)] + [_experiment("stx", s, 1.4) for s in (0, 1, 2)]
    runs += [_experiment(head, s, 1.0, motion="pan") for head in ("film", "stx") for s in (0, 1, 2)]
    return summarize_heads(runs, samples=1000, seed=0)


def test_rows_are_grouped_by_task_and_head_baseline_first(summaries):
    assert [(s.task, s.head) for s in summaries] == [
        ("control", "film"),
        ("control", "stx"),
        ("negative control", "film"),
        ("negative control", "stx"),
    ]
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
    assert stx.above_one() == "yes" and stx.verdict() == "better than film"
    assert film.verdict() == "baseline" and film.above_one().startswith("no effect")
    assert neg_stx.diff_ci[0] < 0 < neg_stx.diff_ci[1]
    assert neg_stx.verdict() == "no difference from film"
    worse = summarize_heads(
        [_experiment("film", s, 1.3) for s in (0, 1)] + [_experiment("mlp", s, 1.0) for s in (0, 1)], samples=500
    )[1]
    assert worse.verdict() == "worse than film"


@pytest.mark.parametrize("failing", ["copy_gap_ci_low", "h_mean_gap_ci_low"])
def test_no_verdict_when_one_seed_lacks_signal(failing):
    runs = [_experiment("film", s, 1.0) for s in (0, 1)] + [_experiment("stx", s, 1.4) for s in (0, 1)]
    runs[3].metrics[failing] = -0.001  # one seed of stx: that interval reaches below 0
    film, stx = summarize_heads(runs, samples=200)
    assert stx.verdict().startswith("better than film; no signal in this setup") and film.verdict() == "baseline"
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
        for key in (
            "head",
            "task",
            "protocol",
            "seeds",
            "ratio_late",
            "ratio_late_ci",
            "diff_vs_film",
            "diff_vs_film_ci",
            "fovea_gain",
            "fovea_gain_ci",
            "h_mean_gap",
            "h_shuffle_gap",
            "copy_gap",
            "train_ratio_last100",
            "verdict",
            "proposal_criterion",
        ):
            assert key in row
        assert len(row["ratio_late_ci"]) == 2 and row["protocol"] == "both_passes"
        assert row["ratio"] == row["ratio_late"] and row["ratio_ci"] == row["ratio_late_ci"]
        assert row["ratio_all_frames"] == 1.0  # the runs' all-frames ratio, under its own name
        assert row["proposal_criterion"] is None  # the proposal's criteria are for fine_only runs
    assert rows[0]["diff_vs_film"] is None and rows[1]["diff_vs_film_ci"][0] > 0


def test_markdown_lists_every_task_head_and_run(summaries):
    text = comparison_markdown(summaries)
    for name in (
        "| control | both_passes | film |",
        "| control | both_passes | stx |",
        "| negative control | both_passes | stx |",
        "film-target-0",
        "stx-pan-2",
        "baseline",
        "better than film",
    ):
        assert name in text


def test_vae_and_dino_targets_are_compared_apart():
    runs = [_experiment(head, s, 1.2 if head == "stx" else 1.0) for head in ("film", "stx") for s in (0, 1)]
    dino = [_experiment(head, s, 1.0) for head in ("film", "stx") for s in (0, 1)]
    for exp in dino:
        exp.params["target"] = "dino"
        exp.name, exp.rev = f"{exp.name}-dino", f"{exp.rev}-dino"
    dino[0].params.pop("target")
    dino[0].metrics["target"] = "dino"  # eval.json's record counts too
    assert {exp.task for exp in dino} == {"control/dino"} and {exp.task for exp in runs} == {"control"}
    kept, left_out = same_setup(runs + dino)
    assert len(kept) == 8 and left_out == []
    rows = summarize_heads(kept, samples=200, seed=0)
    assert [(s.task, s.head, len(s.seeds)) for s in rows] == [
        ("control", "film", 2),
        ("control", "stx", 2),
        ("control/dino", "film", 2),
        ("control/dino", "stx", 2),
    ]


def test_objectives_and_targets_are_compared_apart():
    made = {}
    for objective, target in (("recon", "vae"), ("joint", "vae"), ("recon", "dino"), ("joint", "dino")):
        for head in ("film", "sfilm"):
            for seed in (0, 1):
                exp = _experiment(head, seed, 1.3 if head == "sfilm" else 1.0)
                exp.params.setdefault("train", {})["objective"] = objective
                exp.params["target"] = target
                exp.name = exp.rev = f"{objective}-{target}-{head}-s{seed}"
                made[exp.name] = exp
    made["joint-vae-film-s0"].params["train"].pop("objective")
    made["joint-vae-film-s0"].metrics["objective"] = "joint"  # eval.json's record counts too
    kept, left_out = same_setup(list(made.values()))
    assert len(kept) == 16 and left_out == []
    rows = summarize_heads(kept, samples=200, seed=0)
    tasks = ["control", "control/joint", "control/dino", "control/joint/dino"]
    assert sorted((s.task, s.head, len(s.seeds)) for s in rows) == sorted(
        (task, head, 2) for task in tasks for head in ("film", "sfilm")
    )


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


def test_a_head_missing_a_seed_is_paired_with_film_on_the_seeds_both_have():
    runs = [_experiment("film", s, 1.0) for s in (0, 1, 2)] + [_experiment("stx", s, 1.3) for s in (0, 2)]
    film, stx = summarize_heads(runs, samples=2000, seed=0)
    assert stx.seeds == [0, 2]
    low, high = stx.ratio_ci
    assert low < stx.ratio < high
    film_on_shared = [run for run in film.runs if run.seed in (0, 2)]
    expected = stx.ratio - pooled_ratio(
        *(np.asarray([r.clips[k] for r in film_on_shared]) for k in ("loss_coarse", "loss_fine"))
    )
    assert stx.diff_vs_film == pytest.approx(expected)
    assert stx.diff_ci[0] < stx.diff_vs_film < stx.diff_ci[1]


def test_protocols_are_compared_apart_and_the_proposals_criteria_only_for_fine_only():
    runs = [_experiment(head, s, ratio) for head, ratio in (("film", 1.0), ("stx", 1.3)) for s in (0, 1)]
    runs += [
        _experiment(head, s, ratio, protocol="fine_only")
        for head, ratio in (("film", 1.1), ("stx", 1.3), ("xattn", 1.2))
        for s in (0, 1)
    ]
    kept, left_out = same_setup(runs)
    assert kept == runs and not left_out  # lambda_coarse is the protocol, not another setup
    summaries = summarize_heads(kept, samples=300)
    assert [(s.protocol, s.head) for s in summaries] == [
        ("both_passes", "film"),
        ("both_passes", "stx"),
        ("fine_only", "film"),
        ("fine_only", "stx"),
        ("fine_only", "xattn"),
    ]
    both_stx, fine_stx = summaries[1], summaries[3]
    # each protocol's film is its own baseline
    assert both_stx.diff_vs_film == pytest.approx(both_stx.ratio - summaries[0].ratio)
    assert fine_stx.diff_vs_film == pytest.approx(fine_stx.ratio - summaries[2].ratio)
    assert both_stx.proposal_criterion() is None
    assert summaries[2].proposal_criterion().startswith("proposal's film")
    assert fine_stx.proposal_criterion().startswith("> 1.25: significant")
    assert summaries[4].proposal_criterion().startswith("> 1.17: improvement")
    assert "| fine_only | xattn |" in comparison_markdown(summaries)


def test_fovea_gain_is_the_share_of_what_h_is_worth_that_the_fine_read_adds():
    # coarse = 1.05 x fine and the val-mean h costs 1.1 x fine: the fine read adds half of h's worth
    runs = [_experiment("film", s, 1.05) for s in (0, 1, 2)]
    for run in runs:
        fine = np.asarray(run.clips["loss_fine"])
        run.clips["loss_coarse"] = (fine * 1.05).tolist()
    (film,) = summarize_heads(runs, samples=300)
    assert film.fovea_gain == pytest.approx(0.5)
    assert film.fovea_gain_ci[0] == pytest.approx(0.5) and film.fovea_gain_ci[1] == pytest.approx(0.5)


def test_a_run_is_listed_under_its_experiment_name_whoever_else_holds_its_results(monkeypatch):
    # `dvc exp show`: the workspace and the commit (named after its branch) hold the same results
    # as the experiment run last; the report lists that run once, under the experiment's name.
    import fovea.experiments as report

    same, other = {"ratio_late": 1.2, "head": "sfilm"}, {"ratio_late": 1.0, "head": "film"}
    listing = [
        {"rev": "workspace", "data": {"metrics": {report.EVAL_FILE: {"data": same}}}},
        {
            "rev": "abc1234def",
            "name": "main",
            "data": {"metrics": {report.EVAL_FILE: {"data": same}}},
            "experiments": [
                {
                    "revs": [
                        {"rev": "e1", "name": "head-film", "data": {"metrics": {report.EVAL_FILE: {"data": other}}}},
                        {"rev": "e2", "name": "head-sfilm", "data": {"metrics": {report.EVAL_FILE: {"data": same}}}},
                    ]
                }
            ],
        },
    ]
    monkeypatch.setattr(report, "_dvc_json", lambda repo, *args: listing)
    monkeypatch.setattr(report, "_clips_at", lambda repo, rev: None)
    found = {exp.name: exp for exp in report.read_experiments(Path("."))}
    assert sorted(found) == ["head-film", "head-sfilm"]
    assert found["head-sfilm"].in_workspace and not found["head-film"].in_workspace
