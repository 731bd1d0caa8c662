"""Spatial transformer head: the previous latent becomes a grid of tokens that attend to each
other and to a few tokens made from ``h``, so ``h`` can steer each region and regions can
exchange information before the grid is decoded back to a latent."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fovea.heads._blocks import (
    MultiHeadAttention,
    PositionEmbedding,
    check_channels,
    check_divisible,
    check_positive,
    conv_decoder,
    conv_encoder,
    map_from_tokens,
    mlp,
    tokens_from_map,
)
from fovea.heads.registry import register_head


class DecoderLayer(nn.Module):
    """Pre-norm: self-attention over the spatial tokens, cross-attention to the h tokens, MLP;
    each a residual branch."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.self_norm = nn.LayerNorm(dim)
        self.self_attention = MultiHeadAttention(dim, heads)
        self.cross_norm = nn.LayerNorm(dim)
        self.cross_attention = MultiHeadAttention(dim, heads)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = mlp(dim, mlp_ratio * dim, dim)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        normed = self.self_norm(tokens)
        tokens = tokens + self.self_attention(normed, normed)
        tokens = tokens + self.cross_attention(self.cross_norm(tokens), context)
        return tokens + self.mlp(self.mlp_norm(tokens))


@register_head("stx")
class SpatialTransformerHead(nn.Module):
    """conv(z_prev) -> tokens + positions -> ``layers`` x DecoderLayer (context: ``context_tokens``
    tokens from Linear(h)) -> conv decoder. Token width is ``channels[-1]``.

    There is deliberately no LayerNorm before the decoder: normalising each token would discard
    its magnitude, which here is the latent's value at that position (on a synthetic task where
    h picks a region to change, a final norm made training several times slower).
    """

    def __init__(
        self,
        h_dim: int = 576,
        latent_channels: int = 4,
        height: int = 32,
        width: int = 32,
        channels: Sequence[int] = (64, 128),
        layers: int = 2,
        heads: int = 4,
        context_tokens: int = 4,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        channels = check_channels(channels)
        check_positive(
            h_dim=h_dim,
            latent_channels=latent_channels,
            height=height,
            width=width,
            layers=layers,
            heads=heads,
            context_tokens=context_tokens,
            mlp_ratio=mlp_ratio,
        )
        dim = channels[-1]
        check_divisible(dim, heads, "channels[-1]")
        self.height, self.width = height, width
        self.context_tokens = context_tokens
        self.encoder = conv_encoder(latent_channels, channels)
        self.positions = PositionEmbedding(height, width, dim)
        self.h_to_context = nn.Linear(h_dim, context_tokens * dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, mlp_ratio) for _ in range(layers))
        self.decoder = conv_decoder(channels, latent_channels)

    def forward(self, h: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        tokens = tokens_from_map(self.encoder(z_prev)) + self.positions()
        context = self.h_to_context(h).unflatten(1, (self.context_tokens, -1))  # [N, T, D]
        for layer in self.layers:
            tokens = layer(tokens, context)
        return self.decoder(map_from_tokens(tokens, self.height, self.width))
