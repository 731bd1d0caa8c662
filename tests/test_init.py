"""train.init_from: starting a model from a saved checkpoint of this project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fovea.models.init import CheckpointInitError, init_from_checkpoint
from fovea.models.vlm import FoveatedVLM, VLMConfig
from fovea.params import parse_params

LATENT = (4, 4, 4)
TINY = {"encoder_dim": 16, "encoder_layers": 1, "patch_size": 8, "llm_dim": 16, "llm_layers": 1, "attention_heads": 2}
NARROW_HEADS = {
    "film": {"channels": [8, 16], "film_hidden": 16},
    "xattn": {"channels": [8, 16], "heads": 2, "pos_dim": 8, "query_hidden": 16},
}


def build(head: str, seed: int, latent: tuple[int, int, int] = LATENT, **overrides: Any) -> FoveatedVLM:
    raw = {
        "head": head,
        "frames": {"size": 32},
        "vae": {"block_channels": [8, 8, 8]},
        "model": {"tiny": TINY},
        "heads": NARROW_HEADS,
    }
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    torch.manual_seed(seed)
    return FoveatedVLM.build(VLMConfig.from_params(parse_params(raw), latent))


@pytest.fixture(scope="module")
def film_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    model = build("film", seed=0)
    directory = tmp_path_factory.mktemp("ckpt") / "fvlm"
    model.save(directory, training={"seed": 0, "steps": 0, "final": {}})
    return directory, {name: value.clone() for name, value in model.state_dict().items()}


def assert_equal(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_same_head_loads_every_weight(film_checkpoint):
    directory, saved = film_checkpoint
    model = build("film", seed=1)
    assert not torch.equal(model.static_query, saved["static_query"])  # a different start

    report = init_from_checkpoint(model, directory)

    state = model.state_dict()
    assert state.keys() == saved.keys()
    for name, value in state.items():
        assert_equal(value, saved[name], name)
    assert report["head_loaded"] and report["reason"] is None
    assert (report["loaded"], report["skipped"], report["unused"]) == (len(saved), 0, 0)


def test_different_head_loads_everything_but_the_head(film_checkpoint):
    directory, saved = film_checkpoint
    model = build("xattn", seed=1)
    head_before = {name: value.clone() for name, value in model.head.state_dict().items()}

    report = init_from_checkpoint(model, directory)

    for name, value in model.state_dict().items():
        if name.startswith("head."):
            assert_equal(value, head_before[name.removeprefix("head.")], name)  # untouched
        else:
            assert_equal(value, saved[name], name)
    saved_head = [name for name in saved if name.startswith("head.")]
    assert not report["head_loaded"] and report["saved_head"] == "film"
    assert report["reason"] == "checkpoint head 'film' differs from this model's 'xattn'"
    assert report["skipped"] == len(head_before) == report["skipped_by_reason"]["different head"]
    assert report["loaded"] == len(saved) - len(saved_head)
    assert report["unused"] == len(saved_head)


def test_weights_of_another_shape_are_left_as_built(film_checkpoint):
    """Another latent size: z_init and the head's output layer cannot be copied; the rest is."""
    directory, saved = film_checkpoint
    model = build("film", seed=1, latent=(8, 4, 4))
    z_init = model.z_init.detach().clone()

    report = init_from_checkpoint(model, directory)

    assert_equal(model.z_init, z_init, "z_init")
    assert_equal(model.static_query, saved["static_query"], "static_query")
    assert report["head_loaded"] and report["skipped_by_reason"].get("different shape", 0) >= 2
    assert "z_init" in report["skipped_names"]


def test_a_directory_that_is_not_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointInitError, match=r"train\.init_from: .* is not a checkpoint .*has no"):
        init_from_checkpoint(build("film", seed=0), tmp_path)
    with pytest.raises(CheckpointInitError, match="does not exist"):
        init_from_checkpoint(build("film", seed=0), tmp_path / "nowhere")


def test_another_llm_is_refused_and_nothing_is_loaded(film_checkpoint):
    directory, _ = film_checkpoint
    model = build("film", seed=1, model={"tiny": {**TINY, "llm_dim": 32}})
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.raises(CheckpointInitError, match=r"encoder/LLM do not match.*llm\."):
        init_from_checkpoint(model, directory)
    for name, value in model.state_dict().items():
        assert_equal(value, before[name], name)


def test_init_from_is_a_train_param():
    assert parse_params({}).train.init_from is None
    assert parse_params({"train": {"init_from": "models/fvlm"}}).train.init_from == "models/fvlm"
