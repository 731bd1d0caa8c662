"""Procedural clips of coloured sprites bouncing around a frame.

Each sprite has its own shape, colour, size and velocity, so different regions of a frame move
differently -- exactly what a head that can say "this region changes" should exploit. The
background is static (plain, a gradient, or faint stripes), so only the sprites move.

A clip depends only on ``(seed, index)``: clip 42 is the same whether 10 or 10,000 clips are
generated, and regardless of generation order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = ["COLOURS", "DIRECTIONS", "SHAPES", "SyntheticClip", "make_clip", "direction_name"]

# Saturated colours that all stand out against the dark backgrounds drawn below.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 220, 230),
    "orange": (250, 140, 20),
    "white": (240, 240, 240),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring")

# Compass names for the 8 sectors of a velocity angle, counter-clockwise from +x, with image y
# pointing down (so a negative vy is "up").
DIRECTIONS: tuple[str, ...] = (
    "right",
    "up-right",
    "up",
    "up-left",
    "left",
    "down-left",
    "down",
    "down-right",
)

# Sprite half-size as a fraction of the frame side: full size 1/6 .. 1/4 of the side.
_HALF_SIZE_RANGE = (1 / 12, 1 / 8)
# Speed in pixels per frame at a 64-pixel frame; scaled with the frame size.
_SPEED_RANGE_AT_64 = (1.5, 3.5)
# Sprites get distinct compass directions (while there are enough) jittered by this much.
_DIRECTION_JITTER_RAD = math.radians(15)


@dataclass(frozen=True)
class SyntheticClip:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    caption: str  # e.g. "a red circle moving up-left, a blue square moving right"
    metadata: dict[str, Any]  # JSON-serialisable: sprites and background


def direction_name(vx: float, vy: float) -> str:
    """Compass name of a velocity in image coordinates (y down)."""
    angle = math.atan2(-vy, vx)  # flip y so that "up" is a positive angle
    sector = round(angle / (math.pi / 4)) % 8
    return DIRECTIONS[sector]


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Inside-test on coordinates normalised by the half-size (the shape spans [-1, 1])."""
    if shape == "circle":
        return dx**2 + dy**2 <= 1.0
    if shape == "square":
        # Slightly smaller than the bounding box so its area is close to the circle's.
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85
    if shape == "triangle":
        # Apex up at dy = -1, base at dy = 0.8.
        return (dy <= 0.8) & (np.abs(dx) <= (dy + 1.0) / 1.8)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.0
    if shape == "cross":
        arm = 0.33
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= 1.0)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= 1.0))
    if shape == "ring":
        radius2 = dx**2 + dy**2
        return (radius2 <= 1.0) & (radius2 >= 0.55**2)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


_T = TypeVar("_T")


def _pick(rng: np.random.Generator, options: Sequence[_T], count: int) -> list[_T]:
    """``count`` options, all different while there are enough, then repeating."""
    picked: list[_T] = []
    while len(picked) < count:
        picked.extend(options[i] for i in rng.permutation(len(options)))
    return picked[:count]


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict[str, Any]]:
    base = rng.integers(15, 60, size=3)
    kind = ["plain", "gradient", "stripes"][int(rng.integers(3))]
    image = np.broadcast_to(base.astype(np.float32), (size, size, 3)).copy()
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    if kind == "gradient":
        vertical = bool(rng.integers(2))
        profile = ramp[:, None] if vertical else ramp[None, :]
        image += 12.0 * profile[..., None]
    elif kind == "stripes":
        period = float(rng.uniform(6, 14)) * size / 64
        xs = np.arange(size, dtype=np.float32)
        image += 6.0 * np.sign(np.sin(2 * math.pi * (xs[None, :] + xs[:, None]) / period))[..., None]
    background = np.clip(image, 0, 255).astype(np.uint8)
    return background, {"kind": kind, "base_rgb": [int(c) for c in base]}


def make_clip(seed: int, index: int, num_frames: int, size: int, sprites: int) -> SyntheticClip:
    """Render clip ``index`` of the synthetic data set for ``seed``.

    Args:
        seed: data set seed.
        index: clip number; with ``seed`` the only source of randomness.
        num_frames: frames in the clip.
        size: frame side in pixels (square frames).
        sprites: number of sprites.

    Returns:
        The frames (uint8 [T, size, size, 3]), a caption naming every sprite and its initial
        direction of motion, and metadata with each sprite's shape, colour, size, start and
        velocity (pixels/frame; sprites bounce off the walls, so the direction can flip later).
    """
    if num_frames < 1 or size < 8 or sprites < 1:
        raise ValueError(f"need num_frames >= 1, size >= 8, sprites >= 1; got {num_frames}, {size}, {sprites}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got {seed}, {index}")
    rng = np.random.default_rng([seed, index])

    background, background_meta = _background(rng, size)
    shapes = _pick(rng, SHAPES, sprites)
    colours = _pick(rng, list(COLOURS), sprites)
    sectors = _pick(rng, range(len(DIRECTIONS)), sprites)

    speed_scale = size / 64
    sprite_specs: list[dict[str, Any]] = []
    for shape, colour, sector in zip(shapes, colours, sectors, strict=True):
        # Rounded so the metadata (3 decimals in JSON) describes exactly what is drawn.
        half = round(float(rng.uniform(*_HALF_SIZE_RANGE)) * size, 3)
        angle = sector * math.pi / 4 + float(rng.uniform(-_DIRECTION_JITTER_RAD, _DIRECTION_JITTER_RAD))
        speed = float(rng.uniform(*_SPEED_RANGE_AT_64)) * speed_scale
        # Image y points down, hence the minus sign.
        velocity = (round(speed * math.cos(angle), 3), round(-speed * math.sin(angle), 3))
        start = (
            round(float(rng.uniform(half, size - half)), 3),
            round(float(rng.uniform(half, size - half)), 3),
        )
        sprite_specs.append(
            {
                "shape": shape,
                "colour": colour,
                "size": 2 * half,
                "start": list(start),
                "velocity": list(velocity),
                "direction": direction_name(*velocity),
            }
        )

    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    positions = [list(spec["start"]) for spec in sprite_specs]
    velocities = [list(spec["velocity"]) for spec in sprite_specs]
    for t in range(num_frames):
        frame = background.copy()
        # Later sprites are drawn on top of earlier ones.
        for spec, position in zip(sprite_specs, positions, strict=True):
            half = spec["size"] / 2
            mask = _shape_mask(spec["shape"], (xs - position[0]) / half, (ys - position[1]) / half)
            frame[mask] = COLOURS[spec["colour"]]
        frames[t] = frame
        for spec, position, velocity in zip(sprite_specs, positions, velocities, strict=True):
            _advance(position, velocity, spec["size"] / 2, size)

    caption = ", ".join(f"a {s['colour']} {s['shape']} moving {s['direction']}" for s in sprite_specs)
    metadata = {"sprites": sprite_specs, "background": background_meta}
    return SyntheticClip(frames=frames, caption=caption, metadata=metadata)


def _advance(position: list[float], velocity: list[float], half: float, size: int) -> None:
    """Move one step and reflect off the walls (the sprite stays fully inside the frame)."""
    for axis in range(2):
        position[axis] += velocity[axis]
        low, high = half, size - half
        if position[axis] < low:
            position[axis] = 2 * low - position[axis]
            velocity[axis] = -velocity[axis]
        elif position[axis] > high:
            position[axis] = 2 * high - position[axis]
            velocity[axis] = -velocity[axis]
