"""End to end: the real `dvc repro` and `dvc exp run` on shrunk params, in a copy of the repo."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml
from pipeline_utils import SHRUNK, copy_project, dvc, repo_params, run

from fovea.experiments import read_experiments
from fovea.heads import head_names

pytestmark = pytest.mark.slow

QUEUE_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git repo holding the project's files with shrunk params, after one `dvc repro`."""
    root = copy_project(tmp_path_factory.mktemp("project"), repo_params(SHRUNK))
    dvc(root, "repro")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "repro")
    return root


def test_repro_writes_a_finite_ratio(project):
    metrics = json.loads((project / "metrics" / "eval.json").read_text())
    assert metrics["head"] == SHRUNK.get("head", repo_params({})["head"])
    assert metrics["h_shuffle_gap_ci_low"] <= metrics["h_shuffle_gap"] <= metrics["h_shuffle_gap_ci_high"]
    assert metrics["train_clips"] == metrics["num_clips"] and "val_train_gap" in metrics
    assert (project / "metrics" / "attention.png").read_bytes().startswith(b"\x89PNG")
    assert metrics["num_clips"] >= 1
    assert 0 < metrics["ratio"] < float("inf")
    for name in ("ratio_late", "h_mean_gap", "fovea_gain"):
        assert f"{name}_ci_low" in metrics and f"{name}_ci_high" in metrics, name
    assert metrics["protocol"] == "both_passes" and metrics["train_ratio_last100"] > 0
    assert metrics["small_val_split"] is (metrics["num_clips"] < 10)
    # The recon default still reports the caption loss per pass (the checkpoint has its tokenizer).
    assert metrics["objective"] == "recon" and metrics["caption_ratio"] > 0
    assert len(metrics["loss_fine_iterations"]) == 1 and (project / "models" / "tokenizer").is_dir()
    manifest = json.loads((project / "data" / "latents" / "manifest.json").read_text())
    assert manifest["kept"]["total"] == SHRUNK["data"]["num_clips"]
    assert metrics["target"] == "vae"
    assert json.loads((project / "data" / "dino" / "manifest.json").read_text())["target"] == "vae"
    assert json.loads((project / "metrics" / "vae.json").read_text())["val_mse"] >= 0


def test_second_repro_runs_nothing(project):
    out = dvc(project, "repro").stdout
    assert "Running stage" not in out
    assert dvc(project, "status", "--json").stdout.strip() in ("{}", "")


def test_same_params_and_seed_give_the_same_metrics(project):
    before = {name: (project / name).read_bytes() for name in ("metrics/eval.json", "models/fvlm/model.safetensors")}
    dvc(project, "repro", "--force", "--single-item", "train")
    dvc(project, "repro", "--force", "--single-item", "evaluate")
    for name, content in before.items():
        assert (project / name).read_bytes() == content, f"{name} differs on a rerun"


# The baseline head first: `dvc exp run -S head=X` starts from the workspace, which after a run
# of another head holds that head, so only a first run of the baseline's own head reruns nothing.
HEADS_BASELINE_FIRST = sorted(head_names(), key=lambda name: name != repo_params(SHRUNK)["head"])


@pytest.mark.parametrize("head", HEADS_BASELINE_FIRST)
def test_every_head_runs_through_exp_run_and_reruns_only_train_and_evaluate(project, head):
    baseline = yaml.safe_load(run(project, "git", "show", "HEAD:params.yaml").stdout)["head"]
    out = dvc(project, "exp", "run", "-n", f"head-{head}", "-S", f"head={head}").stdout
    expected = [] if head == baseline else ["train", "evaluate"]
    assert re.findall(r"Running stage '(\w+)'", out) == expected
    rows = {exp.name: exp for exp in read_experiments(project)}
    assert rows[f"head-{head}"].metrics["head"] == head
    assert 0 < rows[f"head-{head}"].metrics["ratio_late"] < float("inf")


def test_joint_objective_and_fine_iterations_rerun_only_train_and_evaluate(project):
    out = dvc(
        project, "exp", "run", "-n", "joint", "-S", "train.objective=joint", "-S", "model.fine_iterations=2"
    ).stdout
    assert re.findall(r"Running stage '(\w+)'", out) == ["train", "evaluate"]
    metrics = json.loads((project / "metrics" / "eval.json").read_text())  # the run just made
    assert metrics["objective"] == "joint" and metrics["train_caption_ratio_last100"] > 0
    assert metrics["caption_loss_fine"] > 0 and metrics["caption_ratio"] > 0
    assert len(metrics["loss_fine_iterations"]) == len(metrics["caption_loss_fine_iterations"]) == 2
    assert metrics["loss_fine_iterations"][-1] == pytest.approx(metrics["loss_fine"])


def test_unknown_head_fails_naming_the_valid_heads_and_keeps_outputs(project):
    watched = ["metrics/eval.json", "models/fvlm/model.safetensors", "models/fvlm/fovea_config.json"]
    before = {name: (project / name).read_bytes() for name in watched}
    result = dvc(project, "exp", "run", "-S", "head=nosuch", check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "unknown head 'nosuch'" in message
    for name in head_names():
        assert name in message
    for name in watched:
        assert (project / name).read_bytes() == before[name], f"{name} changed"
    run(project, "git", "checkout", "params.yaml")


def test_exp_run_reports_the_ratio_in_exp_show(project):
    dvc(project, "exp", "run", "-n", "film-short", "-S", "head=film", "-S", "train.steps=2")
    rows = {exp.name: exp for exp in read_experiments(project)}
    assert rows["film-short"].params["train"]["steps"] == 2
    ratio = rows["film-short"].metrics["ratio_late"]
    assert 0 < ratio < float("inf")


def test_queued_sweep_of_heads_and_seeds_feeds_the_report(project, tmp_path):
    dvc(project, "exp", "run", "--queue", "-S", "head=film,mlp", "-S", "seed=0,1")
    dvc(project, "queue", "start", "-j", "1")
    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    while re.search(r"\b(Queued|Running)\b", dvc(project, "queue", "status").stdout):
        assert time.monotonic() < deadline, dvc(project, "queue", "status").stdout
        time.sleep(2)
    status = dvc(project, "queue", "status").stdout
    assert "Failed" not in status, status + dvc(project, "queue", "logs", "--fail", check=False).stdout

    runs = {(exp.params.get("head"), exp.params.get("seed")) for exp in read_experiments(project)}
    assert {("film", 0), ("film", 1), ("mlp", 0), ("mlp", 1)} <= runs

    run(project, sys.executable, "stages/report.py", "--bootstrap", "300")
    report = (project / "results" / "comparison.md").read_text()
    for row in ("| control | both_passes | film | 0, 1 |", "| control | both_passes | mlp | 0, 1 |"):
        assert row in report, report
    assert re.search(r"\| mlp \|.*\| -?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\] \|", report)  # paired diff
    assert "verdict" in report and "| baseline |" in report
    rows = json.loads((project / "results" / "comparison.json").read_text())["rows"]
    assert {(row["task"], row["head"]) for row in rows} >= {("control", "film"), ("control", "mlp")}
    for picture in ("ratio_by_head.png", "samples.png", "attention.png"):
        data = (project / "results" / picture).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    # the workspace model's pictures are the evaluate stage's, not drawn again
    for picture in ("samples.png", "attention.png"):
        assert (project / "results" / picture).read_bytes() == (project / "metrics" / picture).read_bytes()
    # saved runs rebuilt elsewhere: same rows, and not the workspace's pictures (they are not theirs)
    shutil.copytree(project / "results" / "runs", tmp_path / "rebuilt" / "runs")
    rebuilt = tmp_path / "rebuilt"
    run(project, sys.executable, "stages/report.py", "--from-runs", "--bootstrap", "300", "--out", str(rebuilt))
    rebuilt_rows = json.loads((rebuilt / "comparison.json").read_text())["rows"]
    row_keys = [(r["task"], r["head"], r["seeds"]) for r in rows]
    assert [(r["task"], r["head"], r["seeds"]) for r in rebuilt_rows] == row_keys
    assert not any((rebuilt / picture).exists() for picture in ("samples.png", "attention.png"))


def test_metrics_diff_shows_the_new_metrics(project):
    names = {exp.name for exp in read_experiments(project)}
    assert "head-mlp" in names
    out = dvc(project, "metrics", "diff", "HEAD", "head-mlp", "--all", "--json").stdout
    changed = json.loads(out)["metrics/eval.json"]
    for key in ("ratio_late", "ratio_late_ci_low", "ratio_late_ci_high", "fine_win_rate", "copy_loss", "h_mean_gap"):
        assert key in changed, sorted(changed)


def _back_to_the_committed_run(project: Path) -> None:
    run(project, "git", "checkout", "-f", "HEAD")
    dvc(project, "checkout", "--force")


def test_target_dino_reruns_only_dino_train_and_evaluate(project):
    _back_to_the_committed_run(project)  # earlier tests leave another run in the workspace
    assert dvc(project, "status", "--json").stdout.strip() in ("{}", "")
    try:
        out = dvc(project, "exp", "run", "-n", "target-dino", "-S", "target=dino").stdout
        # Neither the videos, the VAE nor its latents are made again.
        assert re.findall(r"Running stage '(\w+)'", out) == ["dino", "train", "evaluate"]
        manifest = json.loads((project / "data" / "dino" / "manifest.json").read_text())
        tiny = SHRUNK["model"]["tiny"]
        size = SHRUNK["frames"]["size"] // tiny["patch_size"]
        assert manifest["target"] == "dino"
        assert manifest["latents_shape"] == [SHRUNK["frames"]["num"], tiny["encoder_dim"], size, size]
        metrics = json.loads((project / "metrics" / "eval.json").read_text())
        assert metrics["target"] == "dino" and 0 < metrics["ratio_late"] < float("inf")
        for name in ("ratio_late", "h_mean_gap", "h_shuffle_gap", "copy_gap"):
            assert f"{name}_ci_low" in metrics, name
        assert (project / "metrics" / "samples.png").read_bytes().startswith(b"\x89PNG")
        rows = {exp.name: exp for exp in read_experiments(project)}
        assert rows["target-dino"].task == "control/dino"
    finally:
        _back_to_the_committed_run(project)
