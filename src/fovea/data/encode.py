"""Encode RGB frames as an MP4 in memory (the synthetic source's clips)."""

from __future__ import annotations

import io

import av
import numpy as np

from fovea.data.decode import check_frames

__all__ = ["encode_mp4"]


def encode_mp4(frames: np.ndarray, fps: int, crf: int = 18) -> bytes:
    """Encode RGB frames as an H.264 (libx264, yuv420p) MP4, in memory.

    yuv420p halves chroma resolution, so libx264 needs even sides: an odd height or width is
    padded by one replicated row/column at the bottom/right (the decoded video is then one
    pixel larger on that side; the crop in :func:`resize_center_crop` absorbs it).

    Args:
        frames: uint8 array [T, H, W, 3].
        fps: frame rate written into the container.
        crf: x264 constant rate factor; 18 is visually near-lossless.

    Returns:
        The MP4 file as bytes.
    """
    check_frames(frames)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    height, width = frames.shape[1:3]

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        # Options chosen so the same frames always give the same bytes (stable DVC hashes,
        # reproducible latents): x264's output depends on its thread count, so pin it to one;
        # and on tiny frames (64x64) its macroblock-tree rate control was measured to vary
        # from run to run, so turn it off (it only saves bits).
        options = {"crf": str(crf), "preset": "medium", "threads": "1", "x264-params": "mbtree=0"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))  # flush delayed frames
    return buffer.getvalue()
