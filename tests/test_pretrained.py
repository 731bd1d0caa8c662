"""Pretrained models by local path: tiny VAE, DINOv2 and Llama checkpoints saved with
`save_pretrained` load through the project's loaders with the hub switched off, a missing model
fails with a message that says which param and what to do, and the whole pipeline runs through
the real `dvc repro` on those paths."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from functools import partial
from typing import Any

import huggingface_hub.constants
import pytest
import torch
from model_fixtures import (
    SavedModels,
    save_models,
    tiny_dinov2_config,
    tiny_llama_config,
    tiny_vae_config,
)
from pipeline_utils import (
    SHRUNK,
    copy_project,
    dvc,
    merge_params,
    repo_params,
    subprocess_env,
)
from safetensors.torch import load_file

from fovea.models.encoder import load_dinov2
from fovea.models.loading import ModelLoadError
from fovea.models.vae import load_vae
from fovea.models.vlm import FoveatedVLM, VLMConfig, load_llm
from fovea.params import parse_params

# Never used when a name is a path: load_dinov2/load_llm only build from these for `tiny`.
UNUSED_TINY_ENCODER = tiny_dinov2_config()
UNUSED_TINY_LLM = tiny_llama_config()
LATENT = (4, 8, 8)  # the saved VAE (3 blocks: 4x downsampling) at 32x32 frames
FRAME_SIZE = 32


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> SavedModels:
    # An untied causal LM stored in bfloat16: the LM head must be left out and the weights
    # come back in float32.
    return save_models(
        tmp_path_factory.mktemp("pretrained"),
        tiny_vae_config(),
        tiny_dinov2_config(),
        tiny_llama_config(tie_word_embeddings=False),
        llm_dtype=torch.bfloat16,
    )


@pytest.fixture
def offline(monkeypatch) -> None:
    """HF_HUB_OFFLINE=1, and opening any network connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def refuse(sock: socket.socket, address: Any) -> None:
        raise AssertionError(f"network connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def assert_weights_equal(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    """Every weight of ``module`` is float32 and equal to ``expected`` (upcast if need be)."""
    state = module.state_dict()
    assert state.keys() == expected.keys()
    for name, value in state.items():
        assert value.dtype == torch.float32, name
        torch.testing.assert_close(value, expected[name].float(), rtol=0, atol=0, msg=name)


def test_vae_loads_by_path_offline(saved, offline):
    vae = load_vae(saved.vae)
    assert_weights_equal(vae, saved.weights["vae"])
    assert not vae.training


def test_encoder_loads_by_path_offline(saved, offline):
    dinov2 = load_dinov2(str(saved.encoder), UNUSED_TINY_ENCODER)
    assert dinov2.config.hidden_size == 32
    assert_weights_equal(dinov2, saved.weights["encoder"])


def test_causal_lm_checkpoint_loads_as_the_base_model_in_float32(saved, offline):
    stored = load_file(saved.llm / "model.safetensors")
    assert "lm_head.weight" in stored and stored["lm_head.weight"].dtype == torch.bfloat16
    llm = load_llm(str(saved.llm), UNUSED_TINY_LLM)
    assert type(llm).__name__ == "LlamaModel"  # hidden states only: the LM head is left out
    assert llm.config.num_key_value_heads == 2
    assert_weights_equal(llm, saved.weights["llm"])


def test_model_builds_from_paths_and_a_frozen_pretrained_encoder_stays_fixed(saved, offline):
    params = parse_params(
        merge_params(saved.params(), {"model": {"freeze_encoder": True}, "frames": {"size": FRAME_SIZE}})
    )
    torch.manual_seed(0)
    model = FoveatedVLM.build(VLMConfig.from_params(params, LATENT))
    model.train()
    assert not model.encoder.dinov2.training  # no dropout in a frozen encoder
    trainable = [p for p in model.parameters() if p.requires_grad]
    encoder_weights = {id(p) for p in model.encoder.dinov2.parameters()}
    assert not encoder_weights & {id(p) for p in trainable}
    llm_before = {name: p.detach().clone() for name, p in model.llm.named_parameters()}

    frames = torch.randint(0, 256, (2, 3, FRAME_SIZE, FRAME_SIZE, 3), dtype=torch.uint8)
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model(frames, torch.randn(2, 3, *LATENT))["loss"].backward()
    optimizer.step()

    assert all(p.grad is None for p in model.encoder.dinov2.parameters())
    assert_weights_equal(model.encoder.dinov2, saved.weights["encoder"])
    changed = [name for name, p in model.llm.named_parameters() if not torch.equal(p, llm_before[name])]
    assert changed and "embed_tokens.weight" not in changed


def test_a_checkpoint_of_a_pretrained_model_reloads_in_float32(saved, offline, tmp_path):
    params = parse_params(merge_params(saved.params(), {"frames": {"size": FRAME_SIZE}}))
    model = FoveatedVLM.build(VLMConfig.from_params(params, LATENT))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    model.save(tmp_path / "fvlm")
    # As a checkpoint written before weights were forced to float32 would say.
    llm_config = tmp_path / "fvlm" / "llm_config.json"
    llm_config.write_text(json.dumps({**json.loads(llm_config.read_text()), "dtype": "bfloat16"}))

    loaded = FoveatedVLM.load(tmp_path / "fvlm")

    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert_weights_equal(loaded, model.state_dict())


LOADERS: dict[str, Callable[[str], object]] = {
    "vae.name": load_vae,
    "model.encoder": partial(load_dinov2, tiny_config=UNUSED_TINY_ENCODER),
    "model.llm": partial(load_llm, tiny_config=UNUSED_TINY_LLM),
}


@pytest.mark.parametrize("param_key", list(LOADERS))
def test_a_missing_hub_model_names_the_param_and_how_to_provide_it(param_key, offline):
    name = "fovea-tests/no-such-model"
    with pytest.raises(ModelLoadError) as caught:
        LOADERS[param_key](name)
    message = str(caught.value)
    assert message.startswith(f"{param_key}: could not load {name!r}")
    assert "HF_HUB_OFFLINE is set" in message
    assert f"hf download {name}" in message  # download once ...
    assert "save_pretrained" in message and f"set {param_key} to that folder" in message  # ... or a path


@pytest.mark.parametrize("param_key", list(LOADERS))
def test_a_missing_local_folder_is_reported_as_a_path(param_key, offline):
    with pytest.raises(ModelLoadError, match=rf"^{param_key}: './models/nowhere' is not an existing folder"):
        LOADERS[param_key]("./models/nowhere")


def test_a_folder_without_a_model_is_reported(tmp_path, offline):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match=r"^model\.llm: the folder .* holds no loadable model"):
        load_llm(str(tmp_path), UNUSED_TINY_LLM)


@pytest.mark.slow
def test_dvc_repro_runs_on_models_saved_locally_with_the_hub_off(saved, tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("project"), repo_params(merge_params(SHRUNK, saved.params())))
    dvc(project, "repro", env={**subprocess_env(), "HF_HUB_OFFLINE": "1"})

    metrics = json.loads((project / "metrics" / "eval.json").read_text())
    assert 0 < metrics["ratio"] < float("inf")
    assert json.loads((project / "metrics" / "vae.json").read_text())["vae"] == str(saved.vae)
    manifest = json.loads((project / "data" / "latents" / "manifest.json").read_text())
    assert manifest["latents_shape"][-3:] == list(LATENT)
    checkpoint = project / "models" / "fvlm"
    config = json.loads((checkpoint / "fovea_config.json").read_text())
    assert (config["encoder"], config["llm"]) == (str(saved.encoder), str(saved.llm))
    assert json.loads((checkpoint / "encoder_config.json").read_text())["hidden_size"] == 32
    assert json.loads((checkpoint / "llm_config.json").read_text())["hidden_size"] == 48
