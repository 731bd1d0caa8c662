"""Deep-query DINOv2 encoder: one query token per frame reads the frame's patches.

Patches are encoded once with a plain DINOv2 forward, and each layer's keys and values are kept.
A query token then runs through every layer attending only to those cached keys/values (the
patches never see the query), followed by the final layer norm and an output projection. The
query steers each layer's attention but is not itself part of the token (see ``read``). The
same cache serves the coarse and the fine pass, so the patch work is done once per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Dinov2Config, Dinov2Model

from fovea.models.loading import load_pretrained

# DINOv2 was trained on ImageNet-normalised pixels.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Position embedding scale of the tiny random encoder (see load_dinov2).
TINY_POSITION_STD = 1.0


def tiny_dinov2_config(hidden_size: int, layers: int, heads: int, patch_size: int, image_size: int) -> Dinov2Config:
    return Dinov2Config(
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        mlp_ratio=2,
        patch_size=patch_size,
        image_size=image_size,
    )


def load_dinov2(name: str, tiny_config: Dinov2Config) -> Dinov2Model:
    if name == "tiny":
        model = Dinov2Model(tiny_config)
        # A random DINOv2 starts its position embeddings at std 0.02, far below the patch
        # content, so a read of one patch barely says where it is; a pretrained one knows.
        with torch.no_grad():
            model.embeddings.position_embeddings.normal_(std=TINY_POSITION_STD)
        return model
    # Weights in float32 whatever dtype they were saved in; compute precision is autocast's job.
    return load_pretrained(Dinov2Model.from_pretrained, name, "model.encoder", dtype=torch.float32)


@dataclass
class PatchCache:
    """Per-layer keys and values of every frame's patches: lists of [N, heads, P, head_dim]."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]


class AttentionProjections(NamedTuple):
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    output: nn.Linear


def attention_projections(attention: nn.Module) -> AttentionProjections:
    """The linear projections of a Dinov2 layer's attention, in either of the layouts that
    transformers 5.x releases use: ``q_proj``/``k_proj``/``v_proj``/``o_proj`` (newer) or
    ``attention.query``/``.key``/``.value`` plus ``output.dense`` (older, e.g. 5.17)."""
    if hasattr(attention, "q_proj"):
        return AttentionProjections(attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj)
    inner = attention.attention
    return AttentionProjections(inner.query, inner.key, inner.value, attention.output.dense)


class DeepQueryEncoder(nn.Module):
    def __init__(self, dinov2: Dinov2Model, out_dim: int, freeze: bool = False):
        super().__init__()
        self.dinov2 = dinov2
        self.frozen = freeze
        if freeze:
            self.dinov2.requires_grad_(False)
            self.dinov2.eval()
        # Only masked-image pretraining uses the mask token; a trainable parameter that never
        # gets a gradient breaks DDP's gradient reduction.
        if dinov2.embeddings.mask_token is not None:
            dinov2.embeddings.mask_token.requires_grad_(False)
        config = dinov2.config
        self.dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.dim // self.num_heads
        self.output_proj = nn.Linear(self.dim, out_dim)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> DeepQueryEncoder:
        super().train(mode)
        if self.frozen:
            # A frozen encoder is a fixed feature extractor: its dropout and drop-path (set in
            # some pretrained configs) stay off while the rest of the model trains.
            self.dinov2.eval()
        return self

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def encode_patches(self, frames: torch.Tensor) -> PatchCache:
        """``frames`` uint8 [N, H, W, 3] -> cached keys/values of every layer."""
        pixels = frames.permute(0, 3, 1, 2).float().div(255.0)
        pixels = (pixels - self.pixel_mean) / self.pixel_std
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.dinov2.embeddings(pixels)
            keys, values = [], []
            for layer in self.dinov2.encoder.layer:
                normed = layer.norm1(hidden)
                projections = attention_projections(layer.attention)
                keys.append(self._split_heads(projections.key(normed)))
                values.append(self._split_heads(projections.value(normed)))
                hidden = layer(hidden)
        return PatchCache(keys, values)

    def read(self, cache: PatchCache, queries: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Queries [N, D_enc] (one per frame) -> visual tokens [N, out_dim].

        The query steers where every layer reads (it is added to the stream only to form that
        layer's attention query); the stream that becomes the token carries only what was read.
        Added into the stream itself, a query of std 1 dwarfs the patch values of a random
        DINOv2 and the token barely depends on the image.

        ``allowed`` [N, 1 + P] (bool) restricts which of the cached tokens (CLS, then the patches
        in row-major order) each query may attend to; every row must allow at least one.
        """
        return self._read(cache, queries, allowed, with_attention=False)[0]

    def attention_maps(
        self, cache: PatchCache, queries: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Where each query attends over the patches in the last layer, averaged over heads:
        [N, P] (the CLS token's share left out, so rows sum to at most 1)."""
        return self._read(cache, queries, allowed, with_attention=True)[1]

    def _read(
        self, cache: PatchCache, queries: torch.Tensor, allowed: torch.Tensor | None, with_attention: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        steer = queries.unsqueeze(1)
        x = torch.zeros_like(steer)
        mask = None if allowed is None else allowed[:, None, None, :]
        attention = None
        layers = list(zip(self.dinov2.encoder.layer, cache.keys, cache.values, strict=False))
        for index, (layer, keys, values) in enumerate(layers):
            projections = attention_projections(layer.attention)
            q = self._split_heads(projections.query(layer.norm1(x + steer)))
            if with_attention and index == len(layers) - 1:
                scores = (q @ keys.transpose(-1, -2)) / self.head_dim**0.5
                if mask is not None:
                    scores = scores.masked_fill(~mask, float("-inf"))
                attention = scores.softmax(dim=-1).mean(dim=1)[:, 0, 1:]
            attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            attended = attended.transpose(1, 2).reshape(x.shape[0], 1, self.dim)
            x = x + layer.layer_scale1(projections.output(attended))
            x = x + layer.layer_scale2(layer.mlp(layer.norm2(x)))
        return self.output_proj(self.dinov2.layernorm(x)).squeeze(1), attention
