"""The synthetic clip generator: deterministic, visibly moving, honestly captioned."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fovea.data.synthetic import COLOURS, DIRECTIONS, SHAPES, direction_name, make_clip


def test_same_seed_and_index_give_identical_clips() -> None:
    first = make_clip(seed=7, index=3, num_frames=8, size=64, sprites=3)
    second = make_clip(seed=7, index=3, num_frames=8, size=64, sprites=3)
    assert first.frames.shape == (8, 64, 64, 3)
    assert first.frames.dtype == np.uint8
    np.testing.assert_array_equal(first.frames, second.frames)
    assert first.caption == second.caption
    assert first.metadata == second.metadata


def test_other_index_or_seed_gives_other_clips() -> None:
    base = make_clip(seed=7, index=3, num_frames=8, size=64, sprites=3)
    for other in (make_clip(7, 4, 8, 64, 3), make_clip(8, 3, 8, 64, 3)):
        assert not np.array_equal(base.frames, other.frames)
        assert base.metadata != other.metadata


def _centroid(frame: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    ys, xs = np.nonzero(np.all(frame == np.array(colour, dtype=np.uint8), axis=-1))
    assert len(xs) > 0, f"colour {colour} not visible"
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("index", range(4))
def test_sprites_move_and_move_differently(index: int) -> None:
    clip = make_clip(seed=0, index=index, num_frames=8, size=64, sprites=3)
    sprites = clip.metadata["sprites"]
    assert len({s["colour"] for s in sprites}) == 3  # distinct colours make pixels attributable

    velocities = [np.array(s["velocity"]) for s in sprites]
    for velocity in velocities:
        assert np.linalg.norm(velocity) >= 1.0  # visible at 64x64 over 8 frames
    for a, b in itertools.combinations(velocities, 2):
        assert np.linalg.norm(a - b) > 0.5

    # Pixels agree: each sprite's colour centroid moves, and differently for each sprite.
    shifts = []
    for sprite in sprites:
        colour = COLOURS[sprite["colour"]]
        shifts.append(_centroid(clip.frames[1], colour) - _centroid(clip.frames[0], colour))
    for shift in shifts:
        assert np.linalg.norm(shift) > 0.5
    for a, b in itertools.combinations(shifts, 2):
        assert np.linalg.norm(a - b) > 0.5


def test_sprite_sizes_are_a_fair_fraction_of_the_frame() -> None:
    for index in range(5):
        for sprite in make_clip(1, index, 4, 96, 4).metadata["sprites"]:
            assert 96 / 6 - 1e-6 <= sprite["size"] <= 96 / 4 + 1e-6


def test_caption_names_every_sprite_and_its_motion() -> None:
    clip = make_clip(seed=2, index=5, num_frames=8, size=64, sprites=4)
    parts = clip.caption.split(", ")
    assert len(parts) == 4
    for part, sprite in zip(parts, clip.metadata["sprites"], strict=True):
        assert sprite["shape"] in SHAPES and sprite["colour"] in COLOURS
        assert sprite["direction"] == direction_name(*sprite["velocity"])
        assert part == f"a {sprite['colour']} {sprite['shape']} moving {sprite['direction']}"


def test_direction_names_use_image_coordinates() -> None:
    assert direction_name(1.0, 0.0) == "right"
    assert direction_name(0.0, -1.0) == "up"  # y points down in images
    assert direction_name(-1.0, -1.0) == "up-left"
    assert direction_name(1.0, 1.0) == "down-right"
    assert set(DIRECTIONS) == {direction_name(np.cos(a), -np.sin(a)) for a in np.arange(8) * np.pi / 4}


def test_more_sprites_than_colours_still_renders() -> None:
    clip = make_clip(seed=0, index=0, num_frames=2, size=32, sprites=10)
    assert len(clip.metadata["sprites"]) == 10
    assert clip.caption.count(" moving ") == 10
