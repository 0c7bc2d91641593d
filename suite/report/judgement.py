"""Judging one metric of a case: the baseline's values against the candidate's, with a verdict.

Each metric is judged against its noise: the spread of repeats where both sides have at least
MIN_REPEATS of them, else the metric's declared rel_tolerance (suite/judge/metrics.py;
cpu_rel_tolerance when every record was made on a CPU), read as a bound on the ratio of the two
values both ways. Metrics whose direction is `none` are informational: they never get `worse` or
`better`. Without repeats a timing that moved carries no verdict (`needs repeats`), nor does a memory
metric that moved by no more than single runs of one case were measured to move apart
(`Metric.single_run_spread`). Where the two sides ran on different kernel classes, a tight metric that moved by no more
than the measured cross-class band (suite/judge/bands.py) is within noise.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from suite import paths
from suite.judge import bands
from suite.judge.metrics import METRICS, Metric
from suite.records.record import CaseRecord, metric_values
from suite.report import stats
from suite.report.verdicts import BETTER, NEEDS_REPEATS, WITHIN_NOISE, WORSE

MIN_REPEATS = 3


@dataclass(frozen=True)
class Judgement:
    verdict: str
    noise: str  # "repeats" or "tolerance": where the noise band came from
    threshold: float  # relative change that the band allows (inf when the baseline is 0 and the band not)
    note: str = ""


def metric_for(name: str, described: dict | None = None) -> Metric:
    """The declared metric, or one built from what the record says of an undeclared name."""
    if name in METRICS:
        return METRICS[name]
    described = described or {}
    return Metric(name, str(described.get("unit", "")), str(described.get("better", "none")), "")


def spread(values: list[float]) -> float:
    """A robust spread of repeats: the larger of the IQR and the MAD scaled to a normal sigma."""
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    return max(q[2] - q[0], 1.4826 * mad)


def judge(metric: Metric, base: list[float], cand: list[float]) -> Judgement:
    """A metric's verdict from the baseline's and the candidate's values (one per repeat)."""
    b, c = statistics.median(base), statistics.median(cand)
    repeated = len(base) >= MIN_REPEATS and len(cand) >= MIN_REPEATS
    if repeated and min(base) > 0 and min(cand) > 0:
        return _bootstrap_judgement(metric, base, cand, c - b)
    if repeated:
        floor = min(metric.rel_tolerance, metric.min_change) * abs(b)
        band, noise = max(spread(base) + spread(cand), floor), "repeats"
        within = abs(c - b) <= band
    else:
        # The tolerance bounds the ratio both ways (c/b and b/c within 1 + tol), so a throughput
        # that drops 30x is as far out as a step time that grows 30x.
        band, noise = metric.rel_tolerance * abs(b), "tolerance"
        if b > 0 and c > 0:
            within = max(c / b, b / c) <= 1 + metric.rel_tolerance
        else:
            within = abs(c - b) <= band
    threshold = band / abs(b) if b else (0.0 if band == 0 else math.inf)
    judged = _verdict(metric, within, c - b, noise, threshold)
    if judged.verdict in (WORSE, BETTER) and metric.timing and not repeated:
        return _needs_repeats(metric, judged, b, c)
    if judged.verdict in (WORSE, BETTER) and metric.single_run_spread is not None and not repeated \
            and not _beyond(metric.single_run_spread, b, c):
        return _memory_needs_repeats(metric, judged, b, c)
    return judged


def _beyond(spread: float, b: float, c: float) -> bool:
    """Whether c moved from b by more than a relative spread, read both ways as the tolerance is."""
    if b > 0 and c > 0:
        return max(c / b, b / c) > 1 + spread
    return abs(c - b) > spread * abs(b)


def _memory_needs_repeats(metric: Metric, judged: Judgement, b: float, c: float) -> Judgement:
    """A memory metric measured once a side that moved no more than single runs of one case move: no verdict."""
    change = f"{(c - b) / abs(b):+.1%}" if b else f"{c - b:+.3g} {metric.unit} from 0"
    return Judgement(NEEDS_REPEATS, judged.noise, judged.threshold,
                     f"one run a side: by the numbers {judged.verdict} ({change}), within the ±"
                     f"{metric.single_run_spread:.1%} that single runs of one case moved apart "
                     f"(suite/judge/metrics.py); run with --repeats 3 to judge")


def _bootstrap_judgement(metric: Metric, base: list[float], cand: list[float], diff: float) -> Judgement:
    """A statistical test on the repeats: the bootstrap interval of the ratio of medians."""
    t = stats.ratio_test(base, cand)
    least = min(metric.rel_tolerance, metric.min_change)
    threshold = max(t.floor, least)  # the detection floor this pair of runs had
    # a verdict needs the interval to exclude "no change" and the change to be above the floor the
    # report states: nothing smaller than "changes of X% or more would show" is ever flagged
    within = not (t.significant() and abs(t.ratio - 1) > threshold)
    return _verdict(metric, within, diff, "repeats", threshold)


def _needs_repeats(metric: Metric, judged: Judgement, b: float, c: float) -> Judgement:
    """A timing judged worse or better from one run a side: no verdict, the change said."""
    change = f"{(c - b) / abs(b):+.1%}" if b else f"{c - b:+.3g} {metric.unit} from 0"
    return Judgement(NEEDS_REPEATS, judged.noise, judged.threshold,
                     f"one run a side: by the numbers {judged.verdict} ({change}), but a single timing on a "
                     f"shared machine is no verdict; run with --repeats 3 to judge")


def _verdict(metric: Metric, within: bool, diff: float, noise: str, threshold: float) -> Judgement:
    if not within and abs(diff) <= metric.floor:  # a change below the metric's absolute floor
        return Judgement(WITHIN_NOISE, noise, threshold, f"changed by {diff:+.3g} {metric.unit}, below the "
                                                         f"absolute floor {metric.floor:g} {metric.unit}")
    if within:
        return Judgement(WITHIN_NOISE, noise, threshold)
    if metric.better not in ("lower", "higher"):
        return Judgement(WITHIN_NOISE, noise, threshold, "informational: changed beyond noise")
    worse = diff > 0 if metric.better == "lower" else diff < 0
    return Judgement(WORSE if worse else BETTER, noise, threshold)


def device_of(records: list[CaseRecord]) -> str | None:
    """The device type all records were made on ("cpu", "cuda"), or None when they differ."""
    kinds = {r.device_type for r in records}
    return kinds.pop() if len(kinds) == 1 else None


# Metrics whose tolerance is tight, and the cross-class band (suite/judge/bands.py) that judges them
# when the two sides ran on different kernel classes: a nightly fleet that switches runners must not
# read as a regression at every switch (the band says how far the classes' own references lie apart).
CROSS_CLASS = {"reload_max_abs_logit_diff": ("reload_logits", "value"),
               "reference_max_abs_logit_diff": ("reference_untouched", "value"),
               "final_loss": ("golden_curve", "atol"), "initial_loss": ("golden_curve", "atol")}


def classes_of(records: list[CaseRecord]) -> str:
    """The kernel classes records ran on (a record with no payload: unknown)."""
    names = {r.class_name for r in records}
    return ", ".join(sorted(names))


def cross_class_band(metric: str, method: str, profile: str = "cpu") -> tuple[float, str] | None:
    """The measured cross-class band of a tight metric for a method: (width, where it was measured)."""
    if metric not in CROSS_CLASS:
        return None
    check, field = CROSS_CLASS[metric]
    band = bands.load(paths.baselines_root(), profile).for_check(str(method), check)
    return None if band is None else (getattr(band, field), band.source)


def cross_class(metric: str, brecs: list[CaseRecord], crecs: list[CaseRecord], diff: float) -> str | None:
    """Where the sides ran on different kernel classes and a tight metric moved by no more than the
    measured cross-class band: the note that says so (None: judge as usual)."""
    bcls, ccls = classes_of(brecs), classes_of(crecs)
    if bcls == ccls:
        return None
    rec = (crecs or brecs)[0]
    method = rec.method
    band = cross_class_band(metric, str(method), rec.profile or "cpu")
    if band is None or abs(diff) > band[0]:
        return None
    return (f"kernel classes differ ({bcls} -> {ccls}): within the measured cross-class band for {method} "
            f"({band[0]:.3g}; {band[1]})")
