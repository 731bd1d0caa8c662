"""What a video passes before a real source writes it: size, a container PyAV opens, frames that
decode at both ends, duration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fovea.data.decodable import check_decodable
from fovea.data.decode import VideoDecodeError, VideoInfo, probe_video
from fovea.data.sources.report import SourceReport
from fovea.params import DataParams

__all__ = [
    "VIDEO_EXTENSIONS",
    "Rejection",
    "admit",
    "admit_video",
    "at_cap",
    "duration_in_range",
    "video_info_metadata",
]

#: File extensions read as videos by the ``folder`` and ``shards`` sources (lower case).
VIDEO_EXTENSIONS: tuple[str, ...] = ("mp4", "webm", "mkv", "avi", "mov", "m4v")


def duration_in_range(duration: float | None, data: DataParams) -> bool:
    """Whether a duration passes ``data.min_duration``/``max_duration`` (unknown: it does)."""
    if duration is None:
        return True
    if data.min_duration is not None and duration < data.min_duration:
        return False
    return data.max_duration is None or duration <= data.max_duration


def video_info_metadata(info: VideoInfo) -> dict[str, Any]:
    """The probed facts about a video, as stored under ``"video"`` in ``{key}.json``."""
    return {
        "container": info.container,
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "duration": round(info.duration, 6) if info.duration is not None else None,
        "frame_rate": round(info.frame_rate, 6) if info.frame_rate is not None else None,
    }


@dataclass(frozen=True)
class Rejection:
    """Why a video is not written: a skip reason of the report, and the particulars."""

    reason: str
    detail: str


def admit_video(video: bytes, max_bytes: int) -> VideoInfo | Rejection:
    """Check the bytes of one video: its probed info, or why it is rejected.

    ``not_video``: PyAV cannot open it as a container with a video stream; ``corrupt``: it opens
    but its first frame or its last group of pictures does not decode, or it holds fewer frames
    than its index states (:func:`~fovea.data.decodable.check_decodable`). A clip too short for
    ``frames.*``, or damaged in its middle, is still the latents stage's to skip and count.
    """
    if len(video) > max_bytes:
        return Rejection("too_large", f"{len(video)} bytes > data.max_bytes {max_bytes}")
    try:
        info = probe_video(video)
    except VideoDecodeError as error:
        return Rejection("not_video", str(error))
    try:
        check_decodable(video)
    except VideoDecodeError as error:
        return Rejection("corrupt", str(error))
    return info


def admit(key: str, video: bytes, data: DataParams, report: SourceReport, **context: str) -> VideoInfo | None:
    """The video's info if it may be written; otherwise it is counted (skipped or filtered)."""
    outcome = admit_video(video, data.max_bytes)
    if isinstance(outcome, Rejection):
        report.skip(key, outcome.reason, outcome.detail, **context)
        return None
    if not duration_in_range(outcome.duration, data):
        report.filtered_by_duration += 1
        return None
    return outcome


def at_cap(data: DataParams, report: SourceReport) -> bool:
    """Whether ``data.max_videos`` entries were tried (then noted in the report)."""
    if data.max_videos is not None and report.tried >= data.max_videos:
        report.max_videos_reached = True
        return True
    return False
