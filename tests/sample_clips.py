"""Test clips in every container and codec PyAV can write here, with known frame times.

Frame i of every clip is a uniform grey of level 16 + 6 * i, so the index of a decoded frame can
be read back from its mean whatever the codec, size or crop. Imported by the test modules
(pytest puts `tests/` on sys.path).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import pytest
from video_fixtures import encode_clip

_LEVEL_BASE, _LEVEL_STEP = 16, 6
BIT_RATE = 4_000_000  # ample for flat frames: decoded levels stay exact


def frames_of_levels(count: int, height: int, width: int) -> np.ndarray:
    levels = _LEVEL_BASE + _LEVEL_STEP * np.arange(count)
    assert levels.max() <= 255
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).astype(np.uint8)


def frame_index(frame: np.ndarray) -> int:
    return round((float(frame.mean()) - _LEVEL_BASE) / _LEVEL_STEP)


@dataclass(frozen=True)
class Clip:
    name: str
    extension: str
    data: bytes
    frame_times: list[float]  # seconds of each frame from the first


# A variable frame rate clip: intervals of 40, 120 and 250 ms in turn.
_VFR_MS = [0]
for _gap in [40, 120, 250] * 6:
    _VFR_MS.append(_VFR_MS[-1] + _gap)


def cfr_times(count: int, rate: Fraction | int) -> list[float]:
    return [float(i / Fraction(rate)) for i in range(count)]


def make_clips() -> list[Clip]:
    available = av.codecs_available
    specs: list[tuple[str, str, str, str, int, int, Fraction | int, int]] = [
        # name, codec, container format, extension, height, width, rate, frames
        ("h264-landscape", "libx264", "mp4", "mp4", 48, 64, 8, 12),
        ("h264-ntsc-wide", "libx264", "mp4", "mp4", 36, 64, Fraction(30000, 1001), 36),
        ("mpeg4-avi-portrait", "mpeg4", "avi", "avi", 80, 48, 24, 30),
        ("mpeg4-mov", "mpeg4", "mov", "mov", 64, 64, 12, 16),
        ("h264-mkv", "libx264", "matroska", "mkv", 40, 72, 25, 32),
    ]
    if "libvpx" in available:
        specs.append(("vp8-webm", "libvpx", "webm", "webm", 64, 96, 30, 36))
    if "libvpx-vp9" in available:
        specs.append(("vp9-webm", "libvpx-vp9", "webm", "webm", 72, 48, 10, 14))
    clips = [
        Clip(
            name,
            ext,
            encode_clip(frames_of_levels(count, h, w), codec, fmt, rate, bit_rate=BIT_RATE),
            cfr_times(count, rate),
        )
        for name, codec, fmt, ext, h, w, rate, count in specs
    ]
    vfr = encode_clip(frames_of_levels(len(_VFR_MS), 48, 64), "libx264", "mp4", 8, pts_ms=_VFR_MS, bit_rate=BIT_RATE)
    clips.append(Clip("h264-vfr", "mp4", vfr, [ms / 1000 for ms in _VFR_MS]))
    return clips


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    return make_clips()


def expected_indices(clip: Clip, num: int, fps: float | None) -> list[int]:
    count = len(clip.frame_times)
    if fps is None:
        stride = (count - 1) // (num - 1)  # one constant stride, centred
        first = (count - 1 - stride * (num - 1)) // 2
        return [first + stride * i for i in range(num)]
    # The frame on screen at i / fps: the last one starting at or before it.
    return [max(j for j, t in enumerate(clip.frame_times) if t <= i / fps + 1e-9) for i in range(num)]


def mean_pool_encoder(frames: np.ndarray) -> np.ndarray:
    """A stand-in VAE: 8x8 mean pooling into 4 channels ([N, H, W, 3] -> [N, 4, H/8, W/8])."""
    n, h, w, _ = frames.shape
    pooled = frames.reshape(n, h // 8, 8, w // 8, 8, 3).mean(axis=(2, 4)) / 255.0
    return np.concatenate([pooled, pooled[..., :1]], axis=-1).transpose(0, 3, 1, 2)
