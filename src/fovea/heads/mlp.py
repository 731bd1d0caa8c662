"""Direct MLP: ``h`` and the whole flattened previous latent in, the whole next latent out.
``h`` controls everything, but nothing in the head knows which inputs are neighbours."""

from __future__ import annotations

import torch
from torch import nn

from fovea.heads._blocks import check_positive
from fovea.heads.registry import register_head


@register_head("mlp")
class MLPHead(nn.Module):
    """concat(h, flatten(z_prev)) -> hidden -> hidden -> C*H*W (GELU), reshaped to the latent.

    10,033,152 parameters at h_dim 576, latent 4x32x32 and hidden 1024.
    """

    def __init__(
        self,
        h_dim: int = 576,
        latent_channels: int = 4,
        height: int = 32,
        width: int = 32,
        hidden: int = 1024,
    ):
        super().__init__()
        check_positive(h_dim=h_dim, latent_channels=latent_channels, height=height, width=width, hidden=hidden)
        self.latent_shape = (latent_channels, height, width)
        latent_size = latent_channels * height * width
        self.layers = nn.Sequential(
            nn.Linear(h_dim + latent_size, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, latent_size),
        )

    def forward(self, h: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        # One vector per sample, so concatenating h once is cheap (no per-position tiling).
        flat = self.layers(torch.cat([h, z_prev.flatten(1)], dim=1))
        return flat.view(-1, *self.latent_shape)
