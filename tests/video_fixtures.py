"""Test videos written with PyAV in any codec and container, shared by the test modules (pytest
puts `tests/` on sys.path)."""

from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def encode_clip(
    frames: np.ndarray,
    codec: str = "libx264",
    container_format: str = "mp4",
    rate: Fraction | int = 8,
    pts_ms: list[int] | None = None,
    bit_rate: int | None = None,
    options: dict[str, str] | None = None,
    path: Path | None = None,
) -> bytes:
    """Encode RGB frames [T, H, W, 3]; ``pts_ms`` gives a variable frame rate clip.

    ``path`` writes through a file instead of memory, which container options that rewrite the
    output (``movflags=faststart``) need.
    """
    target = str(path) if path is not None else io.BytesIO()
    with av.open(target, mode="w", format=container_format, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            if pts_ms is not None:
                video_frame.pts, video_frame.time_base = pts_ms[index], Fraction(1, 1000)
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return Path(target).read_bytes() if path is not None else target.getvalue()


def faststart_mp4(frames: np.ndarray) -> bytes:
    """An MP4 with its index first, so a truncated copy opens but fails while decoding."""
    with tempfile.TemporaryDirectory() as tmp:
        return encode_clip(frames, options={"movflags": "faststart"}, path=Path(tmp) / "clip.mp4")


def leftovers(parent: Path) -> list[str]:
    """Hidden temporary files a writer left in ``parent`` (none after a finished or failed write)."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def fake_encode(frames: np.ndarray) -> np.ndarray:
    """Stands in for the VAE: 4x4 average pooling, [N, H, W, 3] uint8 -> [N, 3, H/4, W/4]."""
    n, h, w, _ = frames.shape
    scaled = frames.astype(np.float32) / 127.5 - 1.0
    return scaled.reshape(n, h // 4, 4, w // 4, 4, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2)
