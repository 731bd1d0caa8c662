"""The report a real source writes beside its shards: what was listed, skipped and written."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from fovea.data.shards import VIDEOS_REPORT_NAME, ShardSink, video_sample_files
from fovea.data.sources.errors import VideoSourceError

__all__ = ["REPORT_NAME", "SourceReport"]

#: The report a real source writes beside its shards (``data/videos/report.json``).
REPORT_NAME = VIDEOS_REPORT_NAME
# How many examples (key and detail) the report keeps per skip reason.
_MAX_EXAMPLES = 5


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
            f"{self.tried} tried; skipped: {self.skip_summary()}" + (f"; e.g. {'; '.join(firsts)}" if firsts else "")
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
