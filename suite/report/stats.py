"""Judging repeated measurements: a bootstrap confidence interval of the ratio of medians, and the
smallest change a pair of runs could have detected given the noise they measured.

With repeats on both sides (at least MIN_REPEATS), a metric changed when the 95% interval of
median(candidate) / median(baseline) excludes 1, the two samples differ by a rank test (Mann-Whitney
U, p < ALPHA, where that many repeats can reach it: from 4 a side) and the change exceeds both a
practical minimum and the detection floor. The floor is the half-width of that interval where the
two sides had the same median (their own spreads, resampled around a common centre): a change
smaller than it could not have shown. The bootstrap interval alone is too narrow with 5 repeats
(identical pools raised an alarm in 1 of 10 comparisons, benchmarks/sensitivity.py); the rank test
is exact whatever the distribution. Deterministic resampling (a fixed seed), so a report is
reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 4000
LEVEL = 0.95
ALPHA = 0.05  # the rank test's two-sided level
SEED = 20261201


@dataclass(frozen=True)
class RatioTest:
    ratio: float  # median(candidate) / median(baseline)
    low: float  # the interval of the ratio
    high: float
    floor: float  # the smallest relative change these repeats could have shown (0.04: 4%)
    pvalue: float = 1.0  # Mann-Whitney U, two-sided
    rank_test: bool = False  # whether these many repeats can reach ALPHA at all

    def excludes_one(self) -> bool:
        return self.low > 1 or self.high < 1

    def significant(self) -> bool:
        return self.excludes_one() and (self.pvalue < ALPHA or not self.rank_test)


def _medians(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picks = rng.integers(0, len(values), size=(RESAMPLES, len(values)))
    return np.median(values[picks], axis=1)


def ratio_test(base: list[float], cand: list[float]) -> RatioTest:
    """The ratio of medians with its bootstrap interval, and the detection floor. Values must be > 0."""
    b, c = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    rng = np.random.default_rng(SEED)
    mb, mc = _medians(b, rng), _medians(c, rng)
    log_ratio = np.log(mc) - np.log(mb)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.exp(np.percentile(log_ratio, [tail, 100 - tail]))
    # Under "no change": each side's spread around its own median, the same centre for both.
    null = (np.log(mc) - math.log(float(np.median(c)))) - (np.log(mb) - math.log(float(np.median(b))))
    half = float(np.percentile(np.abs(null), LEVEL * 100))
    reachable = 2 / math.comb(len(b) + len(c), len(b)) < ALPHA  # the smallest p-value of an exact rank test
    pvalue = 1.0
    if reachable:
        from scipy.stats import mannwhitneyu

        pvalue = float(mannwhitneyu(b, c, alternative="two-sided").pvalue)
    return RatioTest(float(np.median(c) / np.median(b)), float(low), float(high), math.expm1(half), pvalue,
                     reachable)
