"""Shared by the benchmark scripts: the path to the repo's code and data, step timing, ratios."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def require(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `dvc repro` first (benchmarks measure the default pipeline's data)")
    return path


class StepClock:
    """A StepLogger that only records when each training step ended."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def log_metric(self, name: str, value: float) -> None:
        pass

    def next_step(self) -> None:
        self.ends.append(time.perf_counter())

    def median_step(self, skip: int) -> float:
        intervals = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)][skip:]
        return statistics.median(intervals)


def median_ratio(numerators: list[float], denominators: list[float], unit: str = "") -> str:
    """The median of per-run ratios and the ratios themselves. Run ``i`` of both sides ran
    back to back, so a slow or fast spell of a shared machine hits both alike and cancels out
    (the ratio of the two fastest runs would pair runs from different moments)."""
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return f"{statistics.median(ratios):.3f}{unit}  (runs: {', '.join(f'{r:.2f}' for r in ratios)})"
