"""Cross-attention head: every output position asks, with a query made from ``h`` and its own
position, which positions of the previous latent to read. ``h`` therefore decides, per output
position, where information comes from."""

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
    tokens_from_map,
)
from fovea.heads.registry import register_head


@register_head("xattn")
class CrossAttentionHead(nn.Module):
    """keys/values: conv(z_prev) tokens + position embedding; queries: a small MLP on
    (h, pos), one per output position; multi-head attention; conv decoder back to the latent.

    The query MLP matters: with a purely linear query, q(h, p) . k = a(h) . k + b(p) . k, so h
    would shift every output position's logits by the same per-key bias and could not send one
    region to read differently from another. The attention width is ``channels[-1]``; one
    ``pos_dim`` table of learned positions serves both sides, each through its own projection.
    """

    def __init__(
        self,
        h_dim: int = 576,
        latent_channels: int = 4,
        height: int = 32,
        width: int = 32,
        channels: Sequence[int] = (64, 128, 256),
        heads: int = 4,
        pos_dim: int = 64,
        query_hidden: int = 256,
    ):
        super().__init__()
        channels = check_channels(channels)
        check_positive(
            h_dim=h_dim,
            latent_channels=latent_channels,
            height=height,
            width=width,
            heads=heads,
            pos_dim=pos_dim,
            query_hidden=query_hidden,
        )
        dim = channels[-1]
        check_divisible(dim, heads, "channels[-1]")
        self.height, self.width = height, width
        self.encoder = conv_encoder(latent_channels, channels)
        self.positions = PositionEmbedding(height, width, pos_dim)
        # No bias on the position projections: the token / h side already carries one.
        self.pos_to_key = nn.Linear(pos_dim, dim, bias=False)
        self.h_to_query_hidden = nn.Linear(h_dim, query_hidden)
        self.pos_to_query_hidden = nn.Linear(pos_dim, query_hidden, bias=False)
        self.query_hidden_to_query = nn.Linear(query_hidden, dim)
        self.attention = MultiHeadAttention(dim, heads)
        self.decoder = conv_decoder(channels, latent_channels)

    def forward(self, h: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        positions = self.positions()
        keys_values = tokens_from_map(self.encoder(z_prev)) + self.pos_to_key(positions)
        # First layer on concat(h, pos) as Linear(h) + Linear(pos): [N, 1, F] + [HW, F].
        query_hidden = self.h_to_query_hidden(h)[:, None] + self.pos_to_query_hidden(positions)
        queries = self.query_hidden_to_query(nn.functional.gelu(query_hidden))
        attended = self.attention(queries, keys_values)
        return self.decoder(map_from_tokens(attended, self.height, self.width))
