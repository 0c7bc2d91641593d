"""Comparing runs: one DataFrame row per case x metric, with a verdict in a fixed vocabulary
(suite/report/verdicts.py).

Status decides first (newly failing, fixed), then comparability (a changed case fingerprint, a
different schema, a skip: not comparable; suite/report/outcome.py), then each metric against its
noise (suite/report/judgement.py). A run's comparison adds what either run failed to keep
(integrity.py), the invariants (invariants.py) and checkpoint compatibility (compat.py); the gate
(gate.py) and the environment diff (envdiff.py) read the frame. The renderers, the CLI and the tests
read all of these as `compare.X`: the names below are re-exported for them (__all__).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import replace
from typing import Iterable

import pandas as pd

from suite.judge.metrics import METRICS
from suite.records.record import CaseRecord
from suite.records.runs import Run
from suite.report.compat import COMPAT_PREFIX, compare_checkpoints
from suite.report.coverage import COVERAGE, Coverage, coverage, nothing_compared
from suite.report.envdiff import ENV_KEYS, environment_diff, flat_environment
from suite.report.gate import DEFAULT_FAIL_ON, GATES, counts, gate_fails, gated, parse_fail_on
from suite.report.integrity import integrity, missing_rows, slug_of
from suite.report.invariants import (GROWTH_NOTED, INVARIANT_PREFIX, LOSS_METRICS, LOSS_RELATIONS, compare_invariants,
                                     distrust)
from suite.report.judgement import (CROSS_CLASS, MIN_REPEATS, Judgement, classes_of, cross_class, cross_class_band,
                                    device_of, judge, metric_for, metric_values, spread)
from suite.report.outcome import FAILING, case_diff, errored_note, incomparable, outcome
from suite.report.verdicts import (BETTER, BROKEN_IN_BOTH, COLUMNS, ERRORED, FIXED, KNOWN_BROKEN, LOST, NEEDS_REPEATS,
                                   NEWLY_FAILING, NOT_COMPARABLE, NOTHING_COMPARED, RECORD, RUN, STATUS, UNFINISHED,
                                   UNREADABLE, VERDICTS, WITHIN_NOISE, WORSE, row)

__all__ = [
    # the comparison (this module)
    "compare", "compare_runs", "compare_case", "summarize",
    # the vocabulary (verdicts.py)
    "WORSE", "BETTER", "NEWLY_FAILING", "FIXED", "ERRORED", "NOT_COMPARABLE", "WITHIN_NOISE", "NEEDS_REPEATS", "LOST",
    "UNREADABLE", "UNFINISHED", "NOTHING_COMPARED", "BROKEN_IN_BOTH", "KNOWN_BROKEN", "VERDICTS", "STATUS", "RECORD", "RUN", "COLUMNS", "row",
    # judging a metric (judgement.py)
    "MIN_REPEATS", "Judgement", "metric_for", "spread", "judge", "metric_values", "device_of", "CROSS_CLASS",
    "classes_of", "cross_class_band", "cross_class",
    # a case's outcome (outcome.py)
    "FAILING", "errored_note", "outcome", "case_diff", "incomparable",
    # integrity (integrity.py)
    "slug_of", "integrity", "missing_rows",
    # invariants (invariants.py)
    "INVARIANT_PREFIX", "GROWTH_NOTED", "compare_invariants", "LOSS_RELATIONS", "LOSS_METRICS", "distrust",
    # checkpoint compatibility (compat.py)
    "COMPAT_PREFIX", "compare_checkpoints",
    # what a comparison compared (coverage.py)
    "COVERAGE", "Coverage", "coverage", "nothing_compared",
    # the gate (gate.py)
    "GATES", "DEFAULT_FAIL_ON", "counts", "parse_fail_on", "gated", "gate_fails",
    # the environment diff (envdiff.py)
    "ENV_KEYS", "flat_environment", "environment_diff",
]


def compare(baseline: Run, candidates: Iterable[Run]) -> pd.DataFrame:
    """Every candidate against the baseline, in one frame (column candidate_run tells them apart)."""
    frames = [compare_runs(baseline, cand) for cand in candidates]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def compare_runs(baseline: Run, candidate: Run) -> pd.DataFrame:
    """The comparison of one candidate run with the baseline run."""
    bcases, ccases = baseline.by_case(), candidate.by_case()
    known = set(bcases) | set(ccases)
    brows, _ = integrity(baseline, "baseline", known)
    crows, gone = integrity(candidate, "candidate", known)
    tiers = {**baseline.left_out, **candidate.left_out}  # a case is in one run's left_out at most: the other ran it
    rows = [r for case_id in sorted(set(bcases) | set(ccases))
            for r in compare_case(case_id, bcases.get(case_id, []), ccases.get(case_id, []),
                                  lost=gone.get(case_id, ""), tier=tiers.get(case_id, ""))]
    rows += brows + crows + compare_invariants(baseline.invariants, candidate.invariants)
    rows += compare_checkpoints(candidate.compat)
    distrust(rows)
    df = _frame(rows, baseline, candidate)
    said = nothing_compared(bcases, ccases, df)
    return pd.concat([_frame(said, baseline, candidate), df], ignore_index=True) if said else df


def _frame(rows: list[dict], baseline: Run, candidate: Run) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["baseline_run"], df["candidate_run"] = baseline.name, candidate.name
    for col in ("baseline", "candidate", "ratio", "change", "threshold"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in ("n_baseline", "n_candidate"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    return df


def compare_case(case_id: str, brecs: list[CaseRecord], crecs: list[CaseRecord], lost: str = "",
                 tier: str = "") -> list[dict]:
    """Rows for one case: a status row when its outcome says something, then one row per metric.
    `lost` says why a case with no readable candidate record should have had one; `tier`, the opt-in tier a
    run left the case out with (its manifest's left_out)."""
    if not brecs or not crecs:
        return [_one_sided_row(case_id, brecs, crecs, lost, tier)]
    (bstat, breason), (cstat, creason) = outcome(brecs), outcome(crecs)
    why = incomparable(brecs, crecs, bstat, cstat, breason, creason)
    status = _status_row(case_id, (bstat, breason), (cstat, creason), why,
                         dict(baseline_status=bstat, candidate_status=cstat, n_baseline=len(brecs),
                              n_candidate=len(crecs)))
    rows = [status] if status else []
    if any(r.metrics for r in brecs) and any(r.metrics for r in crecs):  # an errored repeat has none
        for metric_row in _metric_rows(case_id, brecs, crecs, comparable=not why):
            metric_row.update(baseline_status=bstat, candidate_status=cstat)
            rows.append(metric_row)
    return rows


def _one_sided_row(case_id: str, brecs: list[CaseRecord], crecs: list[CaseRecord], lost: str, tier: str = "") -> dict:
    """A case in one run only: lost where it passed in the baseline and the candidate lost its record,
    else not comparable (saying so where that run left the case's tier out: neither lost nor hidden)."""
    where = "baseline" if not brecs else "candidate"
    stat = outcome(brecs or crecs)[0]
    if lost and brecs and stat == "passed":
        return row(case_id, STATUS, LOST, lost, baseline_status=stat, n_baseline=len(brecs))
    note = f"not in the {where} run" + (f" ({lost})" if lost and brecs else "")
    if tier:
        note += f": the {where} run left the {tier} tier out (--{tier} runs it)"
    return row(case_id, STATUS, NOT_COMPARABLE, note,
               baseline_status=stat if brecs else None, candidate_status=stat if crecs else None)


def _status_row(case_id: str, base: tuple[str, str], cand: tuple[str, str], why: list[str],
                status: dict) -> dict | None:
    """The case's status row from the two outcomes (status, reason), or None when it says nothing."""
    (bstat, breason), (cstat, creason) = base, cand
    if cstat == "error" or (bstat == "error" and cstat != "passed"):  # error -> passed is fixed
        return row(case_id, STATUS, ERRORED, "; ".join([errored_note(bstat, breason, cstat, creason), *why]), **status)
    if bstat == "passed" and cstat in FAILING:
        return row(case_id, STATUS, NEWLY_FAILING, "; ".join([creason, *why]), **status)
    if bstat in FAILING and cstat == "passed":
        return row(case_id, STATUS, FIXED, "; ".join([f"was: {breason}", *why]), **status)
    if why:
        return row(case_id, STATUS, NOT_COMPARABLE, "; ".join(why), **status)
    if bstat in FAILING and cstat in FAILING:
        return row(case_id, STATUS, WITHIN_NOISE, f"failing in both runs: {creason}", **status)
    return None


def _metric_names(brecs: list[CaseRecord], crecs: list[CaseRecord]) -> list[str]:
    names = {n for r in brecs + crecs for n in r.metrics}
    order = list(METRICS)
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def _metric_rows(case_id: str, brecs: list[CaseRecord], crecs: list[CaseRecord], comparable: bool) -> list[dict]:
    return [_metric_row(case_id, name, brecs, crecs, comparable) for name in _metric_names(brecs, crecs)]


def _metric_row(case_id: str, name: str, brecs: list[CaseRecord], crecs: list[CaseRecord], comparable: bool) -> dict:
    """One metric of a case judged (suite/report/judgement.py); not comparable when the case is not."""
    described = next((r.metric(name) for r in brecs + crecs if name in r.metrics), {})
    metric = metric_for(name, described if isinstance(described, dict) else {})
    metric = replace(metric, rel_tolerance=metric.tolerance_for(device_of(brecs + crecs)))
    base, cand = metric_values(brecs, name), metric_values(crecs, name)
    fields = dict(unit=metric.unit, better=metric.better, n_baseline=len(base), n_candidate=len(cand))
    if not base or not cand:
        side = "baseline" if not base else "candidate"
        return row(case_id, name, NOT_COMPARABLE, f"no value in the {side}",
                   baseline=statistics.median(base) if base else None,
                   candidate=statistics.median(cand) if cand else None, **fields)
    b, c = statistics.median(base), statistics.median(cand)
    j = judge(metric, base, cand)
    verdict, note = j.verdict, j.note
    if verdict in (WORSE, BETTER) and (across := cross_class(name, brecs, crecs, c - b)):
        verdict, note = WITHIN_NOISE, across
    if not comparable:
        verdict = NOT_COMPARABLE
        note = (f"by the numbers: {j.verdict}" if j.verdict != WITHIN_NOISE
                else "by the numbers: changed (informational)" if j.note else "")
    return row(case_id, name, verdict, note, baseline=b, candidate=c,
               ratio=c / b if b else (1.0 if c == b else math.inf),
               change=(c - b) / abs(b) if b else (0.0 if c == b else math.inf),
               noise=j.noise, threshold=j.threshold, **fields)


def summarize(run: Run) -> pd.DataFrame:
    """One run on its own: a row per case x metric (median over repeats) and a status row per case."""
    rows = []
    for case_id, recs in run.by_case().items():
        stat, reason = outcome(recs)
        rows.append({"run": run.name, "case_id": case_id, "metric": STATUS, "unit": "", "better": "",
                     "value": None, "n": len(recs), "status": stat, "note": reason})
        for name in _metric_names(recs, []):
            values = metric_values(recs, name)
            if values:
                metric = metric_for(name, recs[0].metric(name))
                rows.append({"run": run.name, "case_id": case_id, "metric": name, "unit": metric.unit,
                             "better": metric.better, "value": statistics.median(values), "n": len(values),
                             "status": stat, "note": ""})
    df = pd.DataFrame(rows, columns=["run", "case_id", "metric", "unit", "better", "value", "n", "status", "note"])
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    return df
