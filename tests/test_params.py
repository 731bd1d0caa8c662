from pathlib import Path

import pytest
import yaml

from fovea.heads import head_names
from fovea.params import ParamsError, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repo_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.head in head_names()
    assert params.frames.num >= 2


def test_empty_params_take_the_defaults_params_yaml_ships():
    # One experiment, not two: a partial params file (a test fixture, a user's sketch) gets the
    # same values as the shipped params.yaml for every key it leaves out.
    assert parse_params({}) == load_params(REPO / "params.yaml")


@pytest.mark.parametrize(
    "section, key, value, named",
    [
        ("frames", "num", 1, "frames.num"),
        ("train", "steps", 0, "train.steps"),
        ("train", "lr", "fast", "train.lr"),
        ("train", "lr", -1.0, "train.lr"),
        ("data", "val_fraction", 1.5, "data.val_fraction"),
        ("vae", "block_channels", [16, 0], "vae.block_channels"),
        ("eval", "batch_size", 0, "eval.batch_size"),
    ],
)
def test_bad_values_name_their_key(section, key, value, named):
    raw = repo_params()
    raw[section][key] = value
    with pytest.raises(ParamsError, match=named.replace(".", r"\.")):
        parse_params(raw)


@pytest.mark.parametrize("path", [("nosuch",), ("train", "nosuch"), ("model", "tiny", "nosuch")])
def test_unknown_keys_are_rejected(path):
    raw = repo_params()
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = 1
    with pytest.raises(ParamsError, match=r"\.".join(path) + ": unknown key"):
        parse_params(raw)


def test_unknown_head_lists_the_valid_heads():
    raw = repo_params()
    raw["head"] = "nosuch"
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    message = str(info.value)
    assert "head" in message and "nosuch" in message
    for name in head_names():
        assert name in message


def test_unknown_head_option_lists_the_valid_options():
    raw = repo_params()
    raw["heads"] = {"film": {"nosuch_width": 3}}
    with pytest.raises(ParamsError, match="nosuch_width"):
        parse_params(raw)


def test_frames_must_fit_the_synthetic_clips():
    raw = repo_params()
    raw["frames"]["num"] = raw["data"]["frames_per_clip"] + 1
    with pytest.raises(ParamsError, match="frames.num"):
        parse_params(raw)


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("head: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(listed)
