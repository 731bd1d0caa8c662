"""The one bootstrap of the project, used by evaluate (one run) and report (many runs).

Seeds and val clips are *crossed*: every seed of every head is evaluated on the same val clips.
So each replicate draws one clip resample, shared by every seed and every head, and one resample
of the seeds; statistics of several arrays (a ratio, a difference from film, a gain) are taken on
the same draws, so they are paired. One run is the special case of a single seed.

Every statistic is a ratio of sums (or a difference of such), so a replicate's value and the
point estimate are the same estimator: pooled over the drawn seeds and clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

CI_LEVEL = 0.95


def percentile_interval(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap replicates."""
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class CrossedDraws:
    """Bootstrap draws: clip resamples [samples, clips] shared by every run, and uniform numbers
    [samples, seeds] from which every set of runs draws its seed resample."""

    clips: np.ndarray
    uniform: np.ndarray

    @classmethod
    def make(cls, num_clips: int, num_seeds: int, samples: int, rng: np.random.Generator | int) -> CrossedDraws:
        rng = np.random.default_rng(rng)
        return cls(rng.integers(0, num_clips, size=(samples, num_clips)), rng.random((samples, num_seeds)))

    @property
    def samples(self) -> int:
        return len(self.clips)

    def seeds(self, count: int) -> np.ndarray:
        """A resample of ``count`` seeds (positions 0..count-1) per replicate: [samples, count].
        Runs with the same number of seeds get the same draws, so their differences are paired."""
        return np.floor(self.uniform[:, :count] * count).astype(int)

    def sums(self, per_clip: np.ndarray) -> np.ndarray:
        """Sum over the drawn seeds and clips in every replicate: [seeds, clips] (or [clips] for
        one run) -> [samples]. The clip draw applies to every seed alike (they saw the same
        clips); the seed draw then picks which seeds' rows enter the replicate."""
        per_clip = np.atleast_2d(per_clip)
        per_seed = per_clip[:, self.clips].sum(axis=-1).T  # [samples, seeds]
        rows = np.arange(self.samples)[:, None]
        return per_seed[rows, self.seeds(len(per_clip))].sum(axis=1)

    def means(self, per_clip: np.ndarray) -> np.ndarray:
        """Mean over the drawn seeds and clips in every replicate: [samples]."""
        return self.sums(per_clip) / np.atleast_2d(per_clip).size

    def ratios(self, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        """Pooled ratio sum(numerator) / sum(denominator) in every replicate: [samples]."""
        return self.sums(numerator) / self.sums(denominator)


def pooled_ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """sum(numerator) / sum(denominator) over every seed and clip: the estimator the
    replicates of :meth:`CrossedDraws.ratios` repeat."""
    return float(np.sum(numerator) / np.sum(denominator))


def share_of_gap(loss_coarse: np.ndarray, loss_fine: np.ndarray, loss_h_mean: np.ndarray) -> float:
    """``(L_coarse - L_fine) / (L_hmean - L_fine)``: of what clip-specific ``h`` is worth to the
    fine pass (its loss with the val-mean ``h`` minus its own), the share the fine read adds over
    the coarse one. NaN when ``h`` is worth nothing (the share is undefined)."""
    worth = np.sum(loss_h_mean) - np.sum(loss_fine)
    return float((np.sum(loss_coarse) - np.sum(loss_fine)) / worth) if worth != 0 else float("nan")


def share_of_gap_replicates(
    draws: CrossedDraws, loss_coarse: np.ndarray, loss_fine: np.ndarray, loss_h_mean: np.ndarray
) -> np.ndarray:
    fine = draws.sums(loss_fine)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (draws.sums(loss_coarse) - fine) / (draws.sums(loss_h_mean) - fine)


def finite_interval(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """:func:`percentile_interval` of the finite replicates (NaN, NaN when there are none)."""
    finite = values[np.isfinite(values)]
    return percentile_interval(finite, level) if len(finite) else (float("nan"), float("nan"))


def seed_t_interval(per_seed: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float] | None:
    """Student-t interval of the mean of per-seed values (n - 1 degrees of freedom); None for
    fewer than two seeds. Where seeds differ much more than clip resamples do, a bootstrap over
    a handful of seeds cannot carry that spread, and this interval does."""
    per_seed = np.asarray(per_seed, dtype=float)
    if len(per_seed) < 2:
        return None
    half = scipy_stats.t.ppf(0.5 + level / 2, len(per_seed) - 1) * per_seed.std(ddof=1) / np.sqrt(len(per_seed))
    return float(per_seed.mean() - half), float(per_seed.mean() + half)


def widest(*intervals: tuple[float, float] | None) -> tuple[float, float] | None:
    """The smallest interval holding every given one (None entries ignored)."""
    given = [interval for interval in intervals if interval is not None]
    if not given:
        return None
    return min(low for low, _ in given), max(high for _, high in given)
