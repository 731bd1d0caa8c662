"""Building blocks shared by several heads (not a head itself: the leading ``_`` keeps the
package from importing it as one)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn
from torch.nn.functional import scaled_dot_product_attention


def check_channels(channels: Sequence[int], name: str = "channels") -> tuple[int, ...]:
    """Validate a list of conv widths (params.yaml gives lists, defaults are tuples)."""
    channels = tuple(channels)
    if not channels or any(not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {list(channels)}")
    return channels


def check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_divisible(dim: int, heads: int, dim_name: str = "attention width") -> None:
    if dim % heads:
        raise ValueError(f"{dim_name} ({dim}) must be divisible by heads ({heads})")


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


def conv_encoder(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    """3x3 convs in_channels -> channels[0] -> ... -> channels[-1], each followed by GELU."""
    layers: list[nn.Module] = []
    for width in channels:
        layers += [conv3x3(in_channels, width), nn.GELU()]
        in_channels = width
    return nn.Sequential(*layers)


def conv_decoder(channels: Sequence[int], out_channels: int) -> nn.Sequential:
    """The mirror of :func:`conv_encoder`: channels[-1] -> ... -> channels[0] -> out_channels,
    GELU between convs and none after the last, so the output can take any sign."""
    widths = [*reversed(channels), out_channels]
    layers: list[nn.Module] = []
    for in_width, out_width in pairwise(widths):
        layers += [conv3x3(in_width, out_width), nn.GELU()]
    return nn.Sequential(*layers[:-1])


def sincos_positions(height: int, width: int, dim: int) -> torch.Tensor:
    """2-D sine-cosine embedding [height*width, dim], row-major: half the channels encode the
    row, half the column.

    Frequencies are spaced geometrically between pi (period 2, the finest a grid can show)
    and pi/length (half a period across the grid, so halves and quadrants separate by sign),
    rather than the 1..1/10000 of sequence models, which would leave most channels nearly
    constant over a 32-cell axis.
    """

    def encode(length: int, coordinate: torch.Tensor, axis_dim: int) -> torch.Tensor:
        count = (axis_dim + 1) // 2
        exponents = torch.linspace(0.0, 1.0, count) if count > 1 else torch.zeros(1)
        frequencies = math.pi * float(max(length, 2)) ** -exponents
        # A quarter-cell phase keeps both cos and sin of the period-2 frequency non-zero and
        # puts the slowest one's sign change between the two middle cells.
        angles = (coordinate.float() + 0.25)[:, None] * frequencies[None]
        return torch.cat([angles.cos(), angles.sin()], dim=1)[:, :axis_dim]

    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    row_dim = dim // 2
    return torch.cat([encode(height, rows.flatten(), row_dim), encode(width, cols.flatten(), dim - row_dim)], dim=1)


class PositionEmbedding(nn.Module):
    """A learned vector per latent position, [height*width, dim] in row-major order.

    Starts from a 2-D sine-cosine pattern rather than noise so that neighbouring positions
    begin similar and coarse regions (halves, quadrants) are linearly separable from step 0.
    """

    def __init__(self, height: int, width: int, dim: int):
        super().__init__()
        self.table = nn.Parameter(sincos_positions(height, width, dim))

    def forward(self) -> torch.Tensor:
        return self.table


def tokens_from_map(features: torch.Tensor) -> torch.Tensor:
    """[N, D, H, W] -> [N, H*W, D] (row-major, matching :class:`PositionEmbedding`)."""
    return features.flatten(2).transpose(1, 2)


def map_from_tokens(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[N, H*W, D] -> [N, D, H, W]."""
    return tokens.transpose(1, 2).unflatten(2, (height, width))


class MultiHeadAttention(nn.Module):
    """Multi-head attention through ``scaled_dot_product_attention``, so no [Lq, Lk] score
    matrix is materialised by this code (the fused kernels avoid it where they can)."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        check_divisible(dim, heads)
        self.heads = heads
        kv_dim = dim if kv_dim is None else kv_dim
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(kv_dim, dim)
        self.to_v = nn.Linear(kv_dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # [N, L, D] -> [N, heads, L, D/heads]
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys_values: torch.Tensor) -> torch.Tensor:
        """queries [N, Lq, dim], keys_values [N, Lk, kv_dim] -> [N, Lq, dim]."""
        q = self._split(self.to_q(queries))
        k = self._split(self.to_k(keys_values))
        v = self._split(self.to_v(keys_values))
        attended = scaled_dot_product_attention(q, k, v)
        return self.to_out(attended.transpose(1, 2).flatten(2))


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
