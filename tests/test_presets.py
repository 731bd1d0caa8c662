"""Presets: the paper preset holds the proposal's protocol, and applying a preset merges it into
params.yaml keeping comments, validates before writing and leaves a bad result unwritten."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from pipeline_utils import REPO

from fovea.params import load_params, parse_params
from fovea.presets import PresetError, apply_preset, merge_preset

PAPER = REPO / "presets" / "paper.yaml"


def test_the_paper_preset_holds_the_proposal_protocol():
    overrides = yaml.safe_load(PAPER.read_text())
    params = parse_params(overrides)  # valid on its own: only known keys, good values
    assert (params.frames.num, params.frames.size) == (8, 256)
    assert params.vae.name == "stabilityai/sd-vae-ft-mse"
    assert params.model.encoder == "facebook/dinov2-small" and params.model.freeze_encoder
    assert params.model.llm == "HuggingFaceTB/SmolLM2-135M-Instruct"
    train = params.train
    assert (train.batch_size, train.grad_accum, train.lr, train.warmup, train.steps) == (8, 1, 3e-5, 50, 1000)
    # the original model: the LLM's own queries, heads that predict the latent, trained end to end
    assert params.model.fine_read == "learned" and not params.model.residual and not train.detach_h
    assert train.lambda_coarse == 0 and train.protocol == "fine_only"
    assert "data" not in overrides  # the data source stays the user's choice


def test_the_original_joint_preset_holds_the_original_protocol():
    overrides = yaml.safe_load((REPO / "presets" / "original_joint.yaml").read_text())
    params = parse_params(overrides)
    paper = yaml.safe_load(PAPER.read_text())
    # the paper preset's models and sizes
    assert {key: overrides[key] for key in ("frames", "vae")} == {key: paper[key] for key in ("frames", "vae")}
    assert all(overrides["model"][key] == value for key, value in paper["model"].items())
    train = params.train
    assert (train.objective, train.lambda_recon, params.model.fine_iterations) == ("joint", 0.5, 2)
    assert (train.batch_size, train.grad_accum, train.lr) == (2, 4, 3e-5)
    assert train.protocol == "fine_only" and not train.detach_h and params.head == "film"
    assert "data" not in overrides


def test_applying_a_preset_keeps_comments_and_every_other_key(tmp_path):
    params_path = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_text()
    params_path.write_text(original)

    merged = apply_preset(params_path, PAPER)

    text = params_path.read_text()
    assert text == merged.text
    comments = [line.split("#", 1)[1] for line in original.splitlines() if "#" in line]
    for comment in comments:
        assert comment in text
    before, after = yaml.safe_load(original), yaml.safe_load(text)
    overrides = yaml.safe_load(PAPER.read_text())
    for section, values in after.items():
        for key, value in values.items() if isinstance(values, dict) else [(None, values)]:
            expected = overrides.get(section, {}).get(key) if key is not None else overrides.get(section)
            if expected is None:
                assert value == (before[section][key] if key is not None else before[section])
            else:
                assert value == expected, f"{section}.{key}"
    assert load_params(params_path) == merged.params
    assert {change.key for change in merged.changes} >= {"frames.size", "vae.name", "train.lr"}


def test_applying_twice_changes_nothing(tmp_path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text((REPO / "params.yaml").read_text())
    apply_preset(params_path, PAPER)
    once = params_path.read_text()
    assert apply_preset(params_path, PAPER).changes == []
    assert params_path.read_text() == once


def test_a_new_section_merges_and_lists_replace():
    merged = merge_preset(
        "train:\n  steps: 3   # short\nvae:\n  block_channels: [8, 8]\n",
        "vae:\n  block_channels: [4, 4, 4]\neval:\n  bootstrap: 20\n",
    )
    assert merged.text.startswith("train:\n  steps: 3   # short\n")
    assert yaml.safe_load(merged.text)["vae"]["block_channels"] == [4, 4, 4]
    assert merged.params.eval.bootstrap == 20
    assert [(c.key, c.before, c.after) for c in merged.changes] == [
        ("vae.block_channels", [8, 8], [4, 4, 4]),
        ("eval", None, {"bootstrap": 20}),
    ]


def test_a_bad_preset_names_the_key_and_leaves_params_untouched(tmp_path):
    params_path, preset = tmp_path / "params.yaml", tmp_path / "bad.yaml"
    params_path.write_text((REPO / "params.yaml").read_text())
    preset.write_text("train:\n  lrr: 0.1\nframes:\n  num: 1\n")
    with pytest.raises(PresetError) as caught:
        apply_preset(params_path, preset)
    assert "train.lrr: unknown key" in str(caught.value)
    assert "frames.num" in str(caught.value)
    assert params_path.read_text() == (REPO / "params.yaml").read_text()


def test_a_preset_must_be_a_mapping(tmp_path):
    preset = tmp_path / "list.yaml"
    preset.write_text("- frames\n")
    with pytest.raises(PresetError, match="must hold a mapping"):
        apply_preset(REPO / "params.yaml", preset, write=False)


def test_the_command_prints_without_writing(tmp_path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text((REPO / "params.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "stages/preset.py", str(PAPER), "--params", str(params_path), "--print"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert yaml.safe_load(result.stdout)["vae"]["name"] == "stabilityai/sd-vae-ft-mse"
    assert params_path.read_text() == (REPO / "params.yaml").read_text()
