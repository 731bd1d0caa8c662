"""Can a head let ``h`` change one region of the latent and leave the rest?

Synthetic task: z_prev is white noise; h is a one-hot naming a quadrant; the target is z_prev
with that quadrant negated. Every head sees everything it needs, and each is trained with the
same fixed seed, data, optimiser and (small) sizes; only the head differs.

Why FiLM provably cannot fit it: FiLM's h acts through one (gamma, beta) per channel, the same
at every position, and its only spatial operators are 3x3 convs. So its output at a position is
one fixed function of h and the z_prev window within the convs' reach (``radius``), the same
for every position whose window shows the same part of the zero-padded border. Positions whose
window shows no border cannot tell which quadrant they are in; for them, and for those that see
only a top/bottom or only a left/right border, the best possible prediction is z_p * (1 - 2P),
P being the fraction of such positions that lie in the negated quadrant, costing 4P(1-P) times
the variance. :func:`film_loss_floor` adds this up: for the film used here (one encoder and one
decoder conv, radius 2) on a 12x12 latent it is 5/9 = 0.556 of the target's variance, and the
default film (radius 6) on the paper's 32x32 latent is bounded the same way at 0.527. The other
heads get a per-position signal from learned position embeddings and can fit the task exactly.
"""

from __future__ import annotations

import pytest
import torch

from fovea.heads import build_head, head_names

SIZES = {"h_dim": 16, "latent_channels": 4, "height": 12, "width": 12}
# Narrow widths so that a few hundred Adam steps take seconds on one CPU thread.
OPTIONS = {
    "film": {"channels": [16], "film_hidden": 32},
    "sfilm": {"channels": [16], "film_hidden": 32, "pos_dim": 16},
    "xattn": {"channels": [32], "heads": 4, "query_hidden": 64},
    "stx": {"channels": [16], "heads": 2, "layers": 2, "context_tokens": 4, "mlp_ratio": 2},
}
STEPS = {"film": 300, "sfilm": 300, "xattn": 700, "stx": 200}
# A head missing from OPTIONS/STEPS is trained with its default options for DEFAULT_STEPS, so
# every registered head is checked without editing this file.
DEFAULT_STEPS = 300
# Heads not expected to fit, and why; every other registered head must.
NOT_EXPECTED_TO_FIT = {
    "film": "one modulation for all positions: provably cannot (test_film_cannot_fit)",
    # Measured: held-out MSE / variance stays at 1.00 after 300 steps, at hidden 256 and at the
    # default 1024. With no spatial structure it must learn the sign flip per position from data.
    "mlp": "no spatial structure: does not learn the task in a few hundred steps",
}
SPATIAL_HEADS = [name for name in head_names() if name not in NOT_EXPECTED_TO_FIT]
BATCH, LEARNING_RATE, SEED = 32, 1e-2, 0
# With these settings seeds 0-8 all gave film >= 0.74, sfilm <= 0.002, xattn <= 0.046, stx <= 0.026.
FILM_RADIUS = 2 * len(OPTIONS["film"]["channels"])  # encoder + decoder 3x3 convs
FITS, CANNOT_FIT = 0.1, 0.5  # thresholds on MSE / target variance


def quadrant_masks(height: int, width: int) -> torch.Tensor:
    """[4, H, W] booleans: top-left, top-right, bottom-left, bottom-right."""
    top = (torch.arange(height) < height // 2)[:, None]
    left = (torch.arange(width) < width // 2)[None, :]
    return torch.stack([top & left, top & ~left, ~top & left, ~top & ~left])


def make_batch(size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    channels, height, width = SIZES["latent_channels"], SIZES["height"], SIZES["width"]
    z_prev = torch.randn(size, channels, height, width, generator=generator)
    quadrant = torch.randint(0, 4, (size,), generator=generator)
    h = torch.zeros(size, SIZES["h_dim"])
    h[torch.arange(size), quadrant] = 1.0
    negate = quadrant_masks(height, width)[quadrant][:, None]
    return h, z_prev, torch.where(negate, -z_prev, z_prev)


def film_loss_floor(height: int, width: int, radius: int) -> float:
    """Lowest MSE / variance on the task for any head whose output at a position depends only
    on h and the z_prev window within ``radius`` (a translation-equivariant conv stack with
    zero padding, modulated the same way everywhere), see the module docstring."""

    def border_view(index: int, length: int) -> int | None:
        # A position knows its exact index along an axis only if its window reaches a border.
        return index if index < radius or index >= length - radius else None

    masks = quadrant_masks(height, width).float()
    total = 0.0
    for mask in masks:
        groups: dict[tuple, list[float]] = {}
        for row in range(height):
            for col in range(width):
                key = (border_view(row, height), border_view(col, width))
                groups.setdefault(key, []).append(mask[row, col].item())
        for members in groups.values():
            p = sum(members) / len(members)
            total += len(members) * 4 * p * (1 - p)
    return total / (len(masks) * height * width)


def train(name: str) -> float:
    """Train ``name`` on the task; return its MSE / target variance on held-out samples."""
    torch.manual_seed(SEED)
    head = build_head(name, **SIZES, **OPTIONS.get(name, {}))
    optimizer = torch.optim.Adam(head.parameters(), lr=LEARNING_RATE)
    data = torch.Generator().manual_seed(SEED)
    for _ in range(STEPS.get(name, DEFAULT_STEPS)):
        h, z_prev, target = make_batch(BATCH, data)
        loss = (head(h, z_prev) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    h, z_prev, target = make_batch(512, torch.Generator().manual_seed(SEED + 1))
    with torch.no_grad():
        return ((head(h, z_prev) - target).square().mean() / target.var()).item()


@pytest.fixture(scope="module")
def losses() -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: one thread is as fast and deterministic
    try:
        results = {name: train(name) for name in ["film", *SPATIAL_HEADS]}
    finally:
        torch.set_num_threads(threads)
    floor = film_loss_floor(SIZES["height"], SIZES["width"], FILM_RADIUS)
    print(f"\nquadrant-negation task, held-out MSE / target variance (film floor {floor:.3f}):")
    for name, value in results.items():
        print(f"  {name:<6} {value:.4f}  ({STEPS.get(name, DEFAULT_STEPS)} steps)")
    return results


def test_film_floor_is_above_the_cannot_fit_threshold():
    floor_here = film_loss_floor(SIZES["height"], SIZES["width"], FILM_RADIUS)
    # The default film at the paper's sizes is bounded too (6 convs on a 32x32 latent).
    floor_at_paper_sizes = film_loss_floor(32, 32, 6)
    assert floor_here == pytest.approx(5 / 9) and floor_here > CANNOT_FIT
    assert floor_at_paper_sizes == pytest.approx(0.52734375) and floor_at_paper_sizes > CANNOT_FIT


def test_film_loss_floor_limits():
    assert film_loss_floor(8, 8, 0) == pytest.approx(0.75)  # blind everywhere: P = 1/4
    assert film_loss_floor(8, 8, 4) == 0.0  # every window reaches a border on both axes


def test_film_cannot_fit(losses):
    assert losses["film"] > CANNOT_FIT


def test_the_known_spatial_heads_are_checked():
    assert {"sfilm", "xattn", "stx"} <= set(SPATIAL_HEADS)
    assert set(NOT_EXPECTED_TO_FIT) <= set(head_names()), "a head named here is no longer registered"


@pytest.mark.parametrize("name", SPATIAL_HEADS)
def test_spatially_aware_heads_fit(losses, name):
    assert losses[name] < FITS
