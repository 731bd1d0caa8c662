"""The ``videos`` stage's library side: write clips as WebDataset shards of MP4s.

This module holds the synthetic source and what every real source shares: sample keys, the
admission checks a video passes before it is written, and the report of what was skipped.
The real sources live in :mod:`fovea.data.webvid` and :mod:`fovea.data.sources`;
:func:`fovea.data.sources.write_videos` dispatches on ``data.source``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fovea.data.shards import ShardSink, list_shards, video_sample_files, write_shards
from fovea.data.control import make_control_clip
from fovea.data.synthetic import SyntheticClip, make_clip
from fovea.data.video import VideoDecodeError, VideoInfo, encode_mp4, probe_video
from fovea.params import DataParams

__all__ = [
    "REPORT_NAME",
    "VIDEO_EXTENSIONS",
    "Rejection",
    "SourceReport",
    "VideoSourceError",
    "admit_video",
    "duration_in_range",
    "sample_key",
    "synthetic_clip",
    "synthetic_key",
    "unique_key",
    "video_info_metadata",
    "write_synthetic_videos",
]

#: The report a real source writes beside its shards (``data/videos/report.json``).
REPORT_NAME = "report.json"
#: File extensions read as videos by the ``folder`` and ``shards`` sources (lower case).
VIDEO_EXTENSIONS: tuple[str, ...] = ("mp4", "webm", "mkv", "avi", "mov", "m4v")
# How many examples (key and detail) the report keeps per skip reason.
_MAX_EXAMPLES = 5


class VideoSourceError(RuntimeError):
    """A source's input cannot be read, or nothing usable came out of it."""


def synthetic_key(index: int) -> str:
    return f"synth-{index:06d}"


def synthetic_clip(data: DataParams, seed: int, index: int) -> SyntheticClip:
    """Clip ``index`` of the synthetic task ``data.task``."""
    if data.task == "control":
        return make_control_clip(seed, index, data.frames_per_clip, data.size, data.distractors, data.motion)
    return make_clip(seed, index, data.frames_per_clip, data.size, data.sprites)


def write_synthetic_videos(data: DataParams, seed: int, out_dir: Path) -> dict[str, Any]:
    """Render ``data.num_clips`` synthetic clips and write them as MP4 shards to ``out_dir``.

    Each sample holds ``{key}.mp4``, ``{key}.txt`` (the caption) and ``{key}.json`` (source,
    index, seed, fps, size, number of frames and the sprites). ``out_dir`` is replaced only once
    every shard is written.

    Returns:
        A summary: clips and shards written, and the total MP4 bytes.
    """
    if data.source != "synthetic":
        raise ValueError(
            f"write_synthetic_videos needs data.source 'synthetic', got {data.source!r}"
        )
    mp4_bytes = 0
    with write_shards(out_dir, data.clips_per_shard) as sink:
        for index in tqdm(range(data.num_clips), desc="videos", unit="clip"):
            clip = synthetic_clip(data, seed, index)
            mp4 = encode_mp4(clip.frames, data.fps)
            key = synthetic_key(index)
            metadata = {
                "key": key,
                "source": "synthetic",
                "index": index,
                "seed": seed,
                "fps": data.fps,
                "size": data.size,
                "num_frames": data.frames_per_clip,
                **clip.metadata,  # the task's own: its target and distractors, or its sprites
            }
            sink.write(key, video_sample_files(mp4, clip.caption, metadata))
            mp4_bytes += len(mp4)
        clips = sink.count
    return {
        "source": "synthetic",
        "clips": clips,
        "shards": len(list_shards(out_dir)),
        "mp4_bytes": mp4_bytes,
    }


# --------------------------------------------------------------------------- real sources


def sample_key(text: str) -> str:
    """A WebDataset-safe key from an id or a relative path: ``a/b.c.mp4`` -> ``a_b_c_mp4``.

    WebDataset groups tar members by the name up to the first dot, so keys hold only letters,
    digits, ``-`` and ``_``, and never start with ``_`` (reserved for ``__key__`` and kin).
    """
    key = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return key or "video"


def unique_key(key: str, origin: str, taken: set[str]) -> str:
    """``key``, or ``key-<hash of origin>`` when ``key`` is already taken; adds it to ``taken``.

    Two different inputs can sanitise to the same key (``a/b.mp4`` and ``a_b.mp4``); a suffix
    derived from the original name keeps both, and the same inputs always get the same keys.
    """
    if key in taken:
        key = f"{key}-{hashlib.sha1(origin.encode('utf-8')).hexdigest()[:8]}"
    taken.add(key)
    return key


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

    Only the container is opened (no decoding): whether every frame decodes is the latents
    stage's check, which skips and counts corrupt clips.
    """
    if len(video) > max_bytes:
        return Rejection("too_large", f"{len(video)} bytes > data.max_bytes {max_bytes}")
    try:
        return probe_video(video)
    except VideoDecodeError as error:
        return Rejection("not_video", str(error))


class SourceReport:
    """Counts of what a real source listed, filtered, skipped (by reason) and wrote.

    ``tried`` counts entries that passed the selection (duration filter, ``max_videos``) and
    were then written or skipped; ``skipped`` holds every reason of the source, zeros included,
    so reports of different runs line up.
    """

    def __init__(self, source: str, origin: str, reasons: tuple[str, ...]) -> None:
        self.source = source
        self.origin = origin
        self.entries = 0
        self.filtered_by_duration = 0
        self.max_videos_reached = False
        self.written = 0
        self.bytes = 0
        self.skipped: Counter[str] = Counter({reason: 0 for reason in reasons})
        self.examples: dict[str, list[dict[str, str]]] = {}
        self.extra: dict[str, Any] = {}

    @property
    def tried(self) -> int:
        return self.written + sum(self.skipped.values())

    def skip(self, key: str, reason: str, detail: str, **context: str) -> None:
        self.skipped[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < _MAX_EXAMPLES:
            examples.append({"key": key, **context, "detail": detail})

    def wrote(self, sink: ShardSink, key: str, video: bytes, caption: str, metadata: dict) -> None:
        sink.write(key, video_sample_files(video, caption, metadata))
        self.written += 1
        self.bytes += len(video)

    def skip_summary(self) -> str:
        counts = [f"{reason} {count}" for reason, count in self.skipped.items() if count]
        return ", ".join(counts) or "none"

    def check_usable(self) -> None:
        """Raise :class:`VideoSourceError` (counts and first examples) if nothing was written."""
        if self.written:
            return
        firsts = [
            f"{reason}: {examples[0]['key']} ({examples[0]['detail']})"
            for reason, examples in self.examples.items()
            if examples
        ]
        raise VideoSourceError(
            f"no usable videos from the {self.source} source ({self.origin}): "
            f"{self.entries} entries, {self.filtered_by_duration} filtered by duration, "
            f"{self.tried} tried; skipped: {self.skip_summary()}"
            + (f"; e.g. {'; '.join(firsts)}" if firsts else "")
        )

    def as_dict(self, shards: int) -> dict[str, Any]:
        return {
            "source": self.source,
            "input": self.origin,
            "entries": self.entries,
            "filtered_by_duration": self.filtered_by_duration,
            "max_videos_reached": self.max_videos_reached,
            "tried": self.tried,
            "written": self.written,
            "skipped": dict(self.skipped),
            "skipped_total": sum(self.skipped.values()),
            "examples": self.examples,
            "bytes": self.bytes,
            "shards": shards,
            **self.extra,
        }

    def finish(self, sink: ShardSink) -> dict[str, Any]:
        """Close the shards, check something was written, and write ``report.json`` beside them.

        Call inside :func:`~fovea.data.shards.write_shards`, so a failed source leaves the
        previous output in place.
        """
        sink.close()
        self.check_usable()
        report = self.as_dict(shards=len(sink.shards))
        (sink.directory / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
        return report
