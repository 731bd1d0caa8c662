"""FiLM baseline: ``h`` gives one (gamma, beta) pair per feature channel, broadcast over every
position, so ``h`` can rescale what the convs see but cannot say *where* something changes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fovea.heads._blocks import (
    check_channels,
    check_positive,
    conv_decoder,
    conv_encoder,
    mlp,
)
from fovea.heads.registry import register_head


@register_head("film")
class FiLMHead(nn.Module):
    """conv encoder (z_prev) -> gamma(h) * features + beta(h) -> conv decoder.

    With the defaults at h_dim 576 and a 4x32x32 latent this is the original research code's
    layout, 1,300,612 parameters: encoder 4->64->128->256 (3x3, GELU after each), MLP
    h->512 -GELU-> 512 = (gamma, beta) for 256 channels, decoder 256->128->64->4.
    """

    def __init__(
        self,
        h_dim: int = 576,
        latent_channels: int = 4,
        height: int = 32,
        width: int = 32,
        channels: Sequence[int] = (64, 128, 256),
        film_hidden: int = 512,
    ):
        super().__init__()
        channels = check_channels(channels)
        check_positive(h_dim=h_dim, latent_channels=latent_channels, film_hidden=film_hidden)
        self.encoder = conv_encoder(latent_channels, channels)
        self.to_gamma_beta = mlp(h_dim, film_hidden, 2 * channels[-1])
        self.decoder = conv_decoder(channels, latent_channels)

    def forward(self, h: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        features = self.encoder(z_prev)
        gamma, beta = self.to_gamma_beta(h)[:, :, None, None].chunk(2, dim=1)
        return self.decoder(gamma * features + beta)
