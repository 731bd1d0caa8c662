"""Spatially varying FiLM: like ``film``, but (gamma, beta) are computed per position from
``h`` and that position's embedding, so ``h`` can modulate one region and leave the rest."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fovea.heads._blocks import (
    PositionEmbedding,
    check_channels,
    check_positive,
    conv_decoder,
    conv_encoder,
    map_from_tokens,
)
from fovea.heads.registry import register_head


@register_head("sfilm")
class SpatialFiLMHead(nn.Module):
    """conv encoder (z_prev) -> gamma(h, pos) * features + beta(h, pos) -> conv decoder.

    The encoder and decoder are film's; the modulation MLP is
    GELU(Linear(h) + Linear(pos)) -> Linear -> (gamma, beta) at every position.
    """

    def __init__(
        self,
        h_dim: int = 576,
        latent_channels: int = 4,
        height: int = 32,
        width: int = 32,
        channels: Sequence[int] = (64, 128, 256),
        film_hidden: int = 512,
        pos_dim: int = 64,
    ):
        super().__init__()
        channels = check_channels(channels)
        check_positive(
            h_dim=h_dim,
            latent_channels=latent_channels,
            height=height,
            width=width,
            film_hidden=film_hidden,
            pos_dim=pos_dim,
        )
        self.height, self.width = height, width
        self.encoder = conv_encoder(latent_channels, channels)
        self.positions = PositionEmbedding(height, width, pos_dim)
        self.h_to_hidden = nn.Linear(h_dim, film_hidden)
        self.pos_to_hidden = nn.Linear(pos_dim, film_hidden, bias=False)  # h side has the bias
        self.hidden_to_gamma_beta = nn.Linear(film_hidden, 2 * channels[-1])
        self.decoder = conv_decoder(channels, latent_channels)

    def forward(self, h: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        features = self.encoder(z_prev)
        # First layer on concat(h, pos) as Linear(h) + Linear(pos): [N, 1, F] + [HW, F].
        hidden = self.h_to_hidden(h)[:, None] + self.pos_to_hidden(self.positions())
        gamma_beta = self.hidden_to_gamma_beta(nn.functional.gelu(hidden))  # [N, HW, 2C]
        gamma, beta = map_from_tokens(gamma_beta, self.height, self.width).chunk(2, dim=1)
        return self.decoder(gamma * features + beta)
