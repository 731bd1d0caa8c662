"""The paper and original-joint presets at the real sizes: two training steps on CPU.

The three models are the real architectures (their public configs) with random weights, saved
with `save_pretrained` and named by path, so nothing is downloaded. Params are
`presets/paper.yaml` applied to the repository's params.yaml, with those paths, a few synthetic
256x256 clips and `train.steps: 2`. The stages' functions run in-process, in pipeline order
(videos -> vae -> latents -> train -> evaluate): dvc's wiring is covered by test_pipeline.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from model_fixtures import (
    dinov2_small_config,
    save_models,
    sd_vae_ft_mse_config,
    smollm2_135m_config,
)
from pipeline_utils import REPO, merge_params

from fovea.data.latents import LatentSettings, cache_latents
from fovea.data.sources import write_videos
from fovea.evaluate import evaluate
from fovea.heads import count_parameters
from fovea.io import atomic_directory
from fovea.models.vae import VaeCodec, load_vae
from fovea.params import parse_params
from fovea.presets import merge_preset
from fovea.tokenizer import build_tokenizer
from fovea.train import train

pytestmark = pytest.mark.slow

# Real sizes: SmolLM2's hidden width, SD VAE latents of a 256x256 frame, and the FiLM head's
# parameter count at those sizes in the original research code (DESIGN.md).
H_DIM = 576
LATENT = (4, 32, 32)
FILM_PARAMS_AT_PAPER_SIZES = 1_300_612
# Two clips, the fewest that fill both splits: with the default val_fraction the first synthetic
# key lands in val, the second in train (the endless train stream repeats it). Every frame costs
# a real SD VAE encode at 256x256, so each clip adds seconds.
FEW_CLIPS = {
    "source": "synthetic",
    "num_clips": 2,
    "frames_per_clip": 8,
    "size": 256,
    "clips_per_shard": 4,
    "val_fraction": 0.25,
}


@pytest.mark.parametrize("preset_name", ["paper", "original_joint"])
def test_two_training_steps_of_the_preset_at_the_real_sizes(tmp_path: Path, preset_name: str):
    saved = save_models(
        tmp_path / "pretrained",
        sd_vae_ft_mse_config(),
        dinov2_small_config(),
        smollm2_135m_config(),
        llm_dtype=torch.bfloat16,
    )
    preset = (REPO / "presets" / f"{preset_name}.yaml").read_text()
    applied = yaml.safe_load(merge_preset((REPO / "params.yaml").read_text(), preset).text)
    params = parse_params(
        merge_params(applied, {**saved.params(), "head": "film", "data": FEW_CLIPS, "train": {"steps": 2}})
    )
    # The protocol is the preset's, untouched by the substitutions above.
    assert (params.frames.num, params.frames.size, params.model.freeze_encoder) == (8, 256, True)
    joint = preset_name == "original_joint"
    batch = (2, 4) if joint else (8, 1)
    assert (params.train.batch_size, params.train.grad_accum, params.train.lr) == (*batch, 3e-5)
    assert (params.train.objective, params.model.fine_iterations) == (("joint", 2) if joint else ("recon", 1))

    videos, vae_dir = tmp_path / "data" / "videos", tmp_path / "models" / "vae"
    latents, model_dir = tmp_path / "data" / "latents", tmp_path / "models" / "fvlm"
    write_videos(params.data, videos)

    # The vae stage: a pretrained VAE is loaded by its name (here a path) and saved for latents.
    with atomic_directory(vae_dir) as tmp:
        load_vae(params.vae.name).save_pretrained(tmp)

    codec = VaeCodec(load_vae(vae_dir))
    manifest = cache_latents(
        videos_dir=videos, out_dir=latents, encode=codec.encode, settings=LatentSettings.from_params(params)
    )
    assert manifest["latents_shape"] == [params.frames.num, *LATENT]
    assert manifest["kept"] == {"train": 1, "val": 1, "total": 2}

    tokenizer_dir = tmp_path / "models" / "tokenizer"  # the tokenizer stage: the LLM's own
    build_tokenizer(params.model.llm, videos, params.data.val_fraction).save_pretrained(str(tokenizer_dir))
    result = train(params, latents_dir=latents, out_dir=model_dir, tokenizer_dir=tokenizer_dir)
    assert result.steps == 2
    assert all(math.isfinite(value) for value in result.final.values()), result.final

    evaluated = evaluate(
        model_dir=model_dir,
        val_dir=latents / "val",
        batch_size=params.eval.batch_size,
        bootstrap=params.eval.bootstrap,
        seed=params.seed,
    )
    metrics, model, val = evaluated.metrics, evaluated.model, evaluated.val
    assert model.llm.config.hidden_size == H_DIM and model.encoder.dim == 384
    assert val.h_fine.shape == (1, params.frames.num, H_DIM)
    assert val.pred_fine.shape == val.target.shape == (1, params.frames.num, *LATENT)
    assert metrics["head"] == "film"
    # the original's protocol: the fine loss alone trains; its training-batch ratio is recorded
    assert metrics["protocol"] == "fine_only" and math.isfinite(metrics["train_ratio_last100"])
    assert metrics["head_params"] == count_parameters(model.head) == FILM_PARAMS_AT_PAPER_SIZES
    for key in ("loss_fine", "loss_coarse", "ratio", "caption_loss_fine", "caption_ratio"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0, (key, metrics[key])
    assert len(metrics["loss_fine_iterations"]) == params.model.fine_iterations
    if joint:
        assert math.isfinite(metrics["train_caption_ratio_last100"])
