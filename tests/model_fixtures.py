"""Randomly initialised VAE, DINOv2 and causal-LM checkpoints saved with ``save_pretrained``, the
way a downloaded or hand-saved pretrained model sits on disk. Imported by the test modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from transformers import Dinov2Config, Dinov2Model, LlamaConfig, LlamaForCausalLM

from fovea.tokenizer import fit_tiny_tokenizer


@dataclass(frozen=True)
class SavedModels:
    """Folders written by ``save_pretrained``: what ``vae.name``, ``model.encoder`` and
    ``model.llm`` can point at."""

    vae: Path
    encoder: Path
    llm: Path
    # The weights as built, by model ("vae", "encoder", "llm": the LLM's base model, without
    # the LM head), in the dtype they were saved in.
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, compare=False, repr=False)

    def params(self) -> dict[str, Any]:
        """The params overrides that select these models."""
        return {"vae": {"name": str(self.vae)}, "model": {"encoder": str(self.encoder), "llm": str(self.llm)}}


def save_models(
    root: Path,
    vae_config: dict[str, Any],
    encoder_config: Dinov2Config,
    llm_config: LlamaConfig,
    llm_dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> SavedModels:
    """Build each model from its config with random weights and save it under ``root``.

    The LLM is saved as a causal LM (with its LM head unless the config ties it to the token
    embeddings), as hub LLM checkpoints are; ``llm_dtype`` is the dtype its weights are stored
    in (SmolLM2's are bfloat16).
    """
    torch.manual_seed(seed)
    saved = SavedModels(vae=root / "vae", encoder=root / "dinov2", llm=root / "llm")
    vae = AutoencoderKL(**vae_config)
    vae.save_pretrained(saved.vae)
    encoder = Dinov2Model(encoder_config)
    encoder.save_pretrained(saved.encoder)
    llm = LlamaForCausalLM(llm_config).to(llm_dtype)
    llm.save_pretrained(saved.llm)
    # A hub LLM folder holds its tokenizer too: a small word-level one (ids below the vocab size).
    fit_tiny_tokenizer(["a square moving among still squares"]).save_pretrained(str(saved.llm))
    saved.weights.update(vae=vae.state_dict(), encoder=encoder.state_dict(), llm=llm.model.state_dict())
    return saved


def tiny_vae_config(block_channels: tuple[int, ...] = (8, 8, 8), latent_channels: int = 4) -> dict[str, Any]:
    blocks = len(block_channels)
    return {
        "block_out_channels": block_channels,
        "down_block_types": ("DownEncoderBlock2D",) * blocks,
        "up_block_types": ("UpDecoderBlock2D",) * blocks,
        "layers_per_block": 1,
        "latent_channels": latent_channels,
        "norm_num_groups": 4,
    }


def tiny_dinov2_config() -> Dinov2Config:
    return Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=4, patch_size=8, image_size=64
    )


def tiny_llama_config(tie_word_embeddings: bool = False) -> LlamaConfig:
    # Grouped-query attention (fewer KV heads), as SmolLM2 has.
    return LlamaConfig(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=64,
        tie_word_embeddings=tie_word_embeddings,
    )


# The paper's models, from the public config.json of each on the hub: random weights in the real
# architectures, so shapes, sizes and costs are the real ones without downloading anything.


def sd_vae_ft_mse_config() -> dict[str, Any]:
    """stabilityai/sd-vae-ft-mse (the Stable Diffusion VAE, 8x downsampling, 4 latent channels)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 256,
        "scaling_factor": 0.18215,
    }


def dinov2_small_config() -> Dinov2Config:
    """facebook/dinov2-small (ViT-S/14)."""
    return Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        patch_size=14,
        image_size=518,
        layerscale_value=1.0,
        qkv_bias=True,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        use_swiglu_ffn=False,
    )


def smollm2_135m_config() -> LlamaConfig:
    """HuggingFaceTB/SmolLM2-135M-Instruct (a causal Llama with tied embeddings, stored in bf16)."""
    return LlamaConfig(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=True,
        initializer_range=0.041666666666666664,
    )
