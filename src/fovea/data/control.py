"""The known-answer control task: one moving target among look-alike still distractors.

Built so that where the model looks decides how well it predicts (DESIGN.md, "Knowing the
experiment can see"):

- The frame is a grid of cells the size of one latent cell (8 px for an 8x downsampling VAE).
  Every sprite is the same square in the same colour, one per cell, so in a single frame the
  target cannot be told from the distractors.
- The target moves one cell per frame in one of the 8 compass directions (bouncing off the
  walls); the distractors stand still on cells the target never visits. Only across frames does
  the target stand out, and the next frame differs from the last only at the target's old and
  new cells: a local change at a different place in every clip.
- ``motion: pan`` is the negative control: the whole frame (a textured background, the target and
  the distractors) shifts one cell per frame, wrapping around, so the change is everywhere and a
  static look over the frame sees it as well as a focused one.

A clip depends only on ``(seed, index)``, like the sprites set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fovea.data.synthetic import COLOURS, SyntheticClip, direction_name

__all__ = ["CELL_PIXELS", "make_control_clip"]

#: Side of one grid cell in pixels: one latent cell of an 8x downsampling VAE.
CELL_PIXELS = 8
# The square leaves a 1-pixel margin in its cell, so neighbouring sprites stay apart.
_MARGIN = 1
# One cell per frame along x, y or both: the 8 compass directions.
_STEPS = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0)]


def _bounce(cell: int, step: int, cells: int) -> tuple[int, int]:
    """Next cell along one axis and the (possibly reversed) step; reflects off the walls."""
    nxt = cell + step
    if nxt < 0 or nxt >= cells:
        step = -step
        nxt = cell + step
    return nxt, step


def target_path(start: tuple[int, int], step: tuple[int, int], num_frames: int, cells: int) -> list[tuple[int, int]]:
    """Cells (x, y) the target occupies in frames 0..num_frames-1."""
    (x, y), (dx, dy) = start, step
    path = [(x, y)]
    for _ in range(num_frames - 1):
        x, dx = _bounce(x, dx, cells)
        y, dy = _bounce(y, dy, cells)
        path.append((x, y))
    return path


MOTIONS = ("target", "pan")


def make_control_clip(
    seed: int, index: int, num_frames: int, size: int, distractors: int, motion: str = "target"
) -> SyntheticClip:
    """Render clip ``index`` of the control task for ``seed``.

    Args:
        seed: data set seed.
        index: clip number; with ``seed`` the only source of randomness.
        num_frames: frames in the clip (the target moves one cell between consecutive frames).
        size: frame side in pixels, a multiple of :data:`CELL_PIXELS`.
        distractors: look-alike squares beside the target.
        motion: ``target`` (only the target moves) or ``pan`` (the whole frame moves with it).

    Returns:
        Frames uint8 [T, size, size, 3], a caption, and metadata with the target's cell and
        pixel centre in every frame (``target.cells``, ``target.centres``), its step, and the
        distractors' cells.
    """
    if size % CELL_PIXELS or size < 2 * CELL_PIXELS:
        raise ValueError(f"size must be a multiple of {CELL_PIXELS} and >= {2 * CELL_PIXELS}, got {size}")
    if num_frames < 1 or distractors < 0 or seed < 0 or index < 0:
        raise ValueError(
            f"need num_frames >= 1 and distractors, seed, index >= 0; got {num_frames}, {distractors}, {seed}, {index}"
        )
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")
    cells = size // CELL_PIXELS
    rng = np.random.default_rng([seed, index, 1])  # 1: another stream than the sprites set's

    step = _STEPS[int(rng.integers(len(_STEPS)))]
    start = (int(rng.integers(cells)), int(rng.integers(cells)))
    path = target_path(start, step, num_frames, cells)
    free = [(x, y) for y in range(cells) for x in range(cells) if (x, y) not in set(path)]
    if distractors > len(free):
        raise ValueError(f"{distractors} distractors do not fit in the {len(free)} cells the target leaves free")
    still = [free[i] for i in rng.choice(len(free), size=distractors, replace=False)]

    colour_name = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    background = rng.integers(15, 60, size=3).astype(np.uint8)
    base = np.broadcast_to(background, (size, size, 3)).copy()
    if motion == "pan":
        # A texture of cells, so every patch changes when the frame shifts.
        texture = rng.integers(10, 120, size=(cells, cells, 3)).astype(np.uint8)
        base = np.kron(texture, np.ones((CELL_PIXELS, CELL_PIXELS, 1), dtype=np.uint8))
        path = [start]
        for _ in range(num_frames - 1):  # wraps around: the frame is a torus
            path.append(((path[-1][0] + step[0]) % cells, (path[-1][1] + step[1]) % cells))
    for cell in still:
        _draw(base, cell, COLOURS[colour_name])
    if motion == "pan":
        _draw(base, start, COLOURS[colour_name])
        frames = np.stack(
            [
                np.roll(base, (t * step[1] * CELL_PIXELS, t * step[0] * CELL_PIXELS), axis=(0, 1))
                for t in range(num_frames)
            ]
        )
    else:
        frames = np.repeat(base[None], num_frames, axis=0)
        for frame, cell in zip(frames, path, strict=True):
            _draw(frame, cell, COLOURS[colour_name])

    direction = direction_name(step[0], step[1])
    metadata: dict[str, Any] = {
        "task": "control",
        "motion": motion,
        "cell_pixels": CELL_PIXELS,
        "target": {
            "cells": [list(cell) for cell in path],
            "centres": [[(x + 0.5) * CELL_PIXELS, (y + 0.5) * CELL_PIXELS] for x, y in path],
            "step": list(step),
            "direction": direction,
        },
        "distractors": [list(cell) for cell in still],
        "colour": colour_name,
        "background_rgb": [int(c) for c in background],
    }
    # The caption names what only looking across frames reveals: which way the target (or, in
    # the negative control, the whole frame) moves and the region it starts in.
    region = region_name(start, cells)
    metadata["target"]["start_region"] = region
    if motion == "target":
        caption = f"the {colour_name} square starting {region} moves {direction}; {distractors} others stay still"
    else:
        caption = f"the whole frame pans {direction}; the marked {colour_name} square starts {region}"
    return SyntheticClip(frames=frames, caption=caption, metadata=metadata)


def region_name(cell: tuple[int, int], cells: int) -> str:
    """The third of the frame a cell lies in, across and down: e.g. ``top left``, ``centre``."""
    x, y = (min(3 * c // cells, 2) for c in cell)
    rows, columns = ("top", "middle", "bottom"), ("left", "centre", "right")
    return "centre" if (x, y) == (1, 1) else f"{rows[y]} {columns[x]}"


def _draw(frame: np.ndarray, cell: tuple[int, int], colour: tuple[int, int, int]) -> None:
    x, y = cell
    top, left = y * CELL_PIXELS + _MARGIN, x * CELL_PIXELS + _MARGIN
    frame[top : top + CELL_PIXELS - 2 * _MARGIN, left : left + CELL_PIXELS - 2 * _MARGIN] = colour
