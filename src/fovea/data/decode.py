"""Decode, probe, sample and crop video clips (PyAV for the codec, Pillow for resizing).

Encoding (synthetic clips to MP4) is :mod:`fovea.data.encode`.

Every decoding failure, whatever PyAV raised, surfaces as :class:`VideoDecodeError` with a
reason, so callers can skip and count bad videos without knowing PyAV's exception zoo.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import NamedTuple

import av
import av.error
import numpy as np
from PIL import Image

__all__ = [
    "DECODE_FAILURES",
    "check_frames",
    "ClipTooShortError",
    "SampledClip",
    "VideoDecodeError",
    "VideoInfo",
    "decode_video",
    "load_clip",
    "open_video",
    "probe_video",
    "resize_center_crop",
    "sample_frame_indices",
]


class VideoDecodeError(ValueError):
    """The bytes are not a decodable video (corrupt, truncated, empty, no video stream, ...)."""


class ClipTooShortError(VideoDecodeError):
    """The video decodes but has fewer frames than requested."""


# What PyAV and FFmpeg raise on bad input: FFmpegError covers av.error.* (InvalidDataError,
# EOFError, ...); the builtins cover PyAV's own checks (e.g. an empty stream list, odd
# frame formats) and FFmpeg errno codes mapped to OSError subclasses.
DECODE_FAILURES: tuple[type[BaseException], ...] = (
    av.error.FFmpegError,
    OSError,
    ValueError,
    IndexError,
    RuntimeError,
    EOFError,
)


def check_frames(frames: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[0] == 0:
        raise ValueError("expected at least one frame, got none")


def open_video(data: bytes) -> av.container.InputContainer:
    """Open the bytes as a container with a video stream, decoded on one thread."""
    if not data:
        raise VideoDecodeError("empty input (0 bytes)")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except DECODE_FAILURES as error:
        raise VideoDecodeError(f"cannot open container: {type(error).__name__}: {error}") from error
    if not container.streams.video:
        container.close()
        raise VideoDecodeError("no video stream in container")
    # One decoding thread: clips are decoded in parallel by worker processes, and FFmpeg's
    # automatic threading starts a thread pool for every clip, which cost more than it saved.
    container.streams.video[0].thread_type = "NONE"
    container.streams.video[0].codec_context.thread_count = 1
    return container


def _iter_rgb_frames(
    container: av.container.InputContainer, wanted: set[int] | None
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield (index, frame) for every decoded frame; frames outside ``wanted`` come as None.

    Takes ownership of ``container`` (closes it). Skipping the RGB conversion of unwanted
    frames is what makes sampling 8 frames out of a long clip cheap.
    """
    try:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            if wanted is None or index in wanted:
                yield index, _to_rgb(frame)
            else:
                yield index, None
    except DECODE_FAILURES as error:
        raise VideoDecodeError(f"decoding failed: {type(error).__name__}: {error}") from error
    finally:
        container.close()


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    # threads=1: swscale's default starts a thread pool for every new conversion context (one
    # per clip), which cost more than converting the few small frames sampled from a clip;
    # parallelism comes from decoding clips in separate workers instead.
    return frame.to_ndarray(format="rgb24", threads=1)


def _declared_frame_count(container: av.container.InputContainer) -> int | None:
    """The frame count the container states without demuxing (MP4's sample table), if any."""
    frames = container.streams.video[0].frames
    return frames if frames > 0 else None


def _count_video_packets(data: bytes) -> int:
    """Frame count from demuxing only (no decoding): one packet per frame for MP4/H.264."""
    container = open_video(data)
    try:
        stream = container.streams.video[0]
        # Empty packets are demuxer flush markers, not frames.
        return sum(1 for packet in container.demux(stream) if packet.size)
    except DECODE_FAILURES as error:
        raise VideoDecodeError(f"demuxing failed: {type(error).__name__}: {error}") from error
    finally:
        container.close()


def _stack(frames: list[np.ndarray]) -> np.ndarray:
    if not frames:
        raise VideoDecodeError("no frames could be decoded")
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise VideoDecodeError(f"frame size changes within the video: {sorted(shapes)}")
    return np.stack(frames)


def decode_video(data: bytes) -> np.ndarray:
    """Decode every frame of a video as RGB.

    Returns:
        uint8 array [T, H, W, 3].

    Raises:
        VideoDecodeError: the bytes are empty, not a video, corrupt, or yield no frames.
    """
    frames = _iter_rgb_frames(open_video(data), wanted=None)
    return _stack([frame for _, frame in frames if frame is not None])


def sample_frame_indices(total: int, num: int) -> list[int]:
    """``num`` frame indices at one constant stride, centred in ``total`` frames.

    The stride is the largest that fits (``(total - 1) // (num - 1)``), so every step between
    sampled frames spans the same time: evenly rounded positions (0, 2, 4, 6, 9, ...) would make
    one step longer than the others, and that step's prediction harder.

    Raises:
        ClipTooShortError: ``total < num`` (sampling would repeat frames).
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if total < num:
        raise ClipTooShortError(f"clip has {total} frames, fewer than the {num} requested")
    if num == 1:
        return [(total - 1) // 2]
    stride = (total - 1) // (num - 1)
    first = (total - 1 - stride * (num - 1)) // 2
    return [first + stride * i for i in range(num)]


def resize_center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize so the short side is ``size`` (aspect kept), then crop the centre square.

    Uses Pillow's bicubic filter, which widens its kernel when shrinking and so antialiases.

    Args:
        frames: uint8 array [T, H, W, 3].
        size: side of the output square.

    Returns:
        uint8 array [T, size, size, 3] (the input itself when already that shape).
    """
    check_frames(frames)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    height, width = frames.shape[1:3]
    if height == size and width == size:
        return frames

    scale = size / min(height, width)
    # max(size, ...) guards against rounding the long side below the crop.
    new_height = max(size, round(height * scale))
    new_width = max(size, round(width * scale))
    top = (new_height - size) // 2
    left = (new_width - size) // 2

    out = np.empty((frames.shape[0], size, size, 3), dtype=np.uint8)
    for t, frame in enumerate(frames):
        image = Image.fromarray(frame)
        if (new_height, new_width) != (height, width):
            image = image.resize((new_width, new_height), Image.Resampling.BICUBIC)
        out[t] = np.asarray(image)[top : top + size, left : left + size]
    return out


class SampledClip(NamedTuple):
    """Frames sampled from a clip, and where they came from."""

    frames: np.ndarray  # uint8 [num, size, size, 3]
    indices: list[int]  # indices of the sampled frames in the decoded video
    total_frames: int  # frames in the video (as the container states them, else its packets)
    # seconds from the first frame to each sampled frame (only when sampled by time)
    times: list[float] | None = None


def load_clip(data: bytes, num: int, size: int, fps: float | None = None) -> SampledClip:
    """Decode a video, sample ``num`` frames and resize/crop them to ``size``.

    With ``fps`` unset the frames are taken at one constant stride over the clip
    (:func:`sample_frame_indices`). With ``fps`` set they are the frames shown at ``i / fps`` seconds after the first
    frame (``i < num``), read from the frames' timestamps, so variable frame rate clips are
    sampled in real time; decoding stops once the last sample time is passed.

    Only the sampled frames are converted to RGB. For sampling by stride the frame count is the one
    the container states (MP4), else counted from its packets; if decoding then yields a
    different count (damaged streams), the clip is decoded again in full and sampled from the
    frames that really exist.

    Raises:
        ClipTooShortError: fewer than ``num`` frames, or (with ``fps``) the last frame starts
            before the last sample time.
        VideoDecodeError: anything else wrong with the bytes.
    """
    if fps is not None:
        return _load_clip_by_time(data, num, size, fps)
    container = open_video(data)
    total = _declared_frame_count(container)
    if total is None or total < num:
        container.close()
        total = _count_video_packets(data)
        if total < num:
            # A truncated file also has few packets: decode it fully so damage is reported as
            # corruption, and only a clean short clip as too short.
            total = len(decode_video(data))
        container = open_video(data)
    indices = sample_frame_indices(total, num)
    wanted = set(indices)
    decoded = 0
    picked: dict[int, np.ndarray] = {}
    for index, frame in _iter_rgb_frames(container, wanted):
        decoded += 1
        if frame is not None:
            picked[index] = frame
    if decoded != total:
        frames = decode_video(data)
        total = len(frames)
        indices = sample_frame_indices(total, num)
        sampled = frames[indices]
    else:
        sampled = _stack([picked[i] for i in indices])
    return SampledClip(resize_center_crop(sampled, size), indices, total)


# Frame times are pts * time_base in floating point; this slack (far below any frame interval)
# keeps a frame whose time rounds a hair above a sample time from missing that sample.
_TIME_SLACK = 1e-6


def _frame_time(frame: av.VideoFrame, index: int, stream: av.video.stream.VideoStream) -> float:
    if frame.time is not None:
        return float(frame.time)
    # Raw elementary streams carry no timestamps: fall back to the nominal frame rate.
    rate = stream.average_rate or stream.guessed_rate
    if rate:
        return index / float(rate)
    raise VideoDecodeError("frames carry no timestamps and the stream states no frame rate")


def _load_clip_by_time(data: bytes, num: int, size: int, fps: float) -> SampledClip:
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    container = open_video(data)
    total = _declared_frame_count(container) or _count_video_packets(data)
    # The frame shown at time t is the last one whose timestamp is <= t. Walking the frames in
    # order, every sample time before a frame's timestamp therefore belongs to the frame before.
    sample_times: list[float] | None = None
    picked: list[tuple[int, float]] = []  # (frame index, frame time) per sample
    rgb: dict[int, np.ndarray] = {}  # converted frames; one frame can serve several samples
    previous: tuple[int, float, av.VideoFrame] | None = None

    def pick_previous() -> None:
        assert previous is not None  # the first sample time is the first frame's time
        index, time, frame = previous
        if index not in rgb:
            rgb[index] = _to_rgb(frame)
        picked.append((index, time))

    try:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            time = _frame_time(frame, index, stream)
            if sample_times is None:
                sample_times = [time + i / fps for i in range(num)]
            elif previous is not None and time <= previous[1]:
                continue  # a frame that does not advance the clock is never on screen
            while len(picked) < num and sample_times[len(picked)] < time - _TIME_SLACK:
                pick_previous()
            if len(picked) == num:
                break
            previous = (index, time, frame)
        else:
            # End of the clip: the last frame serves the sample times it does not precede.
            while (
                previous is not None
                and sample_times is not None
                and len(picked) < num
                and sample_times[len(picked)] <= previous[1] + _TIME_SLACK
            ):
                pick_previous()
    except DECODE_FAILURES as error:
        raise VideoDecodeError(f"decoding failed: {type(error).__name__}: {error}") from error
    finally:
        container.close()

    if sample_times is None or previous is None:
        raise VideoDecodeError("no frames could be decoded")
    if len(picked) < num:
        start = sample_times[0]
        raise ClipTooShortError(
            f"clip's frames span {previous[1] - start:.3f}s, shorter than the "
            f"{sample_times[-1] - start:.3f}s that {num} frames at {fps:g} fps need"
        )
    frames = _stack([rgb[index] for index, _ in picked])
    start = sample_times[0]
    times = [round(time - start, 6) for _, time in picked]
    return SampledClip(resize_center_crop(frames, size), [index for index, _ in picked], total, times)


class VideoInfo(NamedTuple):
    """What a container says about its first video stream, without decoding it."""

    container: str  # FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "h264", "vp9"
    width: int
    height: int
    duration: float | None  # seconds; None when the container does not say
    frame_rate: float | None  # the stream's average frame rate; None when unknown


def probe_video(data: bytes) -> VideoInfo:
    """Open the bytes as a container and describe its video stream (nothing is decoded).

    Raises:
        VideoDecodeError: the bytes are empty, not a container PyAV can open, or hold no
            video stream.
    """
    container = open_video(data)
    try:
        stream = container.streams.video[0]
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            container=container.format.name,
            codec=stream.codec_context.name,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration=duration,
            frame_rate=float(rate) if rate else None,
        )
    except DECODE_FAILURES as error:
        detail = f"{type(error).__name__}: {error}"
        raise VideoDecodeError(f"cannot read stream info: {detail}") from error
    finally:
        container.close()
