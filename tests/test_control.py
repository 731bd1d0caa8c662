"""The known-answer control task: what the generator draws, and the motion read that finds it."""

import numpy as np
import pytest
import torch

from fovea.data.control import CELL_PIXELS, make_control_clip, target_path
from fovea.models.vlm import MOTION_THRESHOLD, motion_patches
from fovea.params import ParamsError, parse_params

SIZE, FRAMES = 64, 8
CELLS = SIZE // CELL_PIXELS


def _cell(frame: np.ndarray, cell) -> np.ndarray:
    x, y = cell
    return frame[y * CELL_PIXELS : (y + 1) * CELL_PIXELS, x * CELL_PIXELS : (x + 1) * CELL_PIXELS]


def test_same_seed_and_index_give_the_same_clip_and_others_differ():
    first, again = make_control_clip(3, 5, FRAMES, SIZE, 12), make_control_clip(3, 5, FRAMES, SIZE, 12)
    assert np.array_equal(first.frames, again.frames) and first.metadata == again.metadata
    assert not np.array_equal(first.frames, make_control_clip(3, 6, FRAMES, SIZE, 12).frames)
    assert not np.array_equal(first.frames, make_control_clip(4, 5, FRAMES, SIZE, 12).frames)


@pytest.mark.parametrize("index", range(20))
def test_only_the_target_moves_one_cell_per_frame_among_still_look_alikes(index):
    clip = make_control_clip(0, index, FRAMES, SIZE, 12)
    cells = [tuple(c) for c in clip.metadata["target"]["cells"]]
    still = [tuple(c) for c in clip.metadata["distractors"]]
    assert len(still) == 12 and not set(still) & set(cells)
    for before, after in zip(cells, cells[1:], strict=False):
        assert max(abs(after[0] - before[0]), abs(after[1] - before[1])) == 1  # >= 8 px every frame
    # Look-alikes: the target's cell and every distractor's cell hold the same pixels.
    for t, frame in enumerate(clip.frames):
        for cell in still:
            assert np.array_equal(_cell(frame, cell), _cell(frame, cells[t]))
    # Between frames only the target's old and new cells change.
    for t in range(1, FRAMES):
        changed = np.argwhere(np.any(clip.frames[t] != clip.frames[t - 1], axis=-1)) // CELL_PIXELS
        assert {(int(x), int(y)) for y, x in changed} == {cells[t - 1], cells[t]}


def test_the_target_goes_a_different_way_in_different_clips():
    steps = {tuple(make_control_clip(0, i, FRAMES, SIZE, 12).metadata["target"]["step"]) for i in range(60)}
    starts = {tuple(make_control_clip(0, i, FRAMES, SIZE, 12).metadata["target"]["cells"][0]) for i in range(60)}
    assert len(steps) == 8 and len(starts) > 30


def test_the_path_bounces_off_the_walls():
    assert target_path((6, 0), (1, -1), 4, 8) == [(6, 0), (7, 1), (6, 2), (5, 3)]


def test_the_pan_moves_every_cell_with_the_target():
    clip = make_control_clip(0, 2, FRAMES, SIZE, 12, motion="pan")
    dx, dy = clip.metadata["target"]["step"]
    for t in range(1, FRAMES):
        expected = np.roll(clip.frames[t - 1], (dy * CELL_PIXELS, dx * CELL_PIXELS), axis=(0, 1))
        assert np.array_equal(clip.frames[t], expected)
        x, y = clip.metadata["target"]["cells"][t]
        assert np.array_equal(_cell(clip.frames[t], (x, y)), _cell(clip.frames[0], clip.metadata["target"]["cells"][0]))


def test_motion_read_allows_the_changed_patches_only():
    clip = make_control_clip(1, 4, FRAMES, SIZE, 12)
    frames = torch.from_numpy(clip.frames)[None]
    allowed = motion_patches(frames, CELL_PIXELS)[0]  # [T, 1 + P]
    assert allowed.shape == (FRAMES, 1 + CELLS * CELLS)
    assert allowed[0].all()  # the first frame has no previous one: a plain read
    cells = clip.metadata["target"]["cells"]
    for t in range(1, FRAMES):
        patches = {(i % CELLS, i // CELLS) for i in torch.nonzero(allowed[t, 1:]).flatten().tolist()}
        assert patches == {tuple(cells[t - 1]), tuple(cells[t])} and not allowed[t, 0]
    # Where nothing moves, nothing is masked; a change below the threshold is no motion.
    still = frames[:, :1].repeat(1, 3, 1, 1, 1)
    still[:, 2] = (still[:, 2].int() + int(MOTION_THRESHOLD) - 2).clamp(0, 255).to(torch.uint8)
    assert motion_patches(still, CELL_PIXELS).all()


def test_the_pan_makes_the_motion_read_a_plain_read_almost_everywhere():
    clip = make_control_clip(0, 7, FRAMES, SIZE, 12, motion="pan")
    allowed = motion_patches(torch.from_numpy(clip.frames)[None], CELL_PIXELS)[0, 1:, 1:]
    assert allowed.float().mean() > 0.9


@pytest.mark.parametrize(
    "data,named",
    [
        ({"size": 60}, "multiple of 8"),
        ({"size": 32, "frames_per_clip": 8, "distractors": 9}, "data.distractors"),
        ({"motion": "sideways"}, "data.motion"),
    ],
)
def test_params_that_do_not_fit_the_control_task_are_rejected(data, named):
    with pytest.raises(ParamsError, match=named):
        parse_params({"data": {"task": "control", **data}, "frames": {"size": 32, "num": 4}})


def test_the_caption_names_the_direction_and_the_start_region() -> None:
    from fovea.data.control import region_name

    assert region_name((0, 0), 8) == "top left" and region_name((4, 4), 8) == "centre"
    assert region_name((7, 3), 8) == "middle right" and region_name((3, 7), 8) == "bottom centre"
    for motion in ("target", "pan"):
        for index in range(6):
            clip = make_control_clip(seed=0, index=index, num_frames=4, size=64, distractors=4, motion=motion)
            target = clip.metadata["target"]
            start = target["cells"][0]
            assert target["direction"] in clip.caption
            assert f"starts {region_name(tuple(start), 8)}" in clip.caption or (
                f"starting {region_name(tuple(start), 8)}" in clip.caption
            )
            assert ("pans" in clip.caption) == (motion == "pan")
