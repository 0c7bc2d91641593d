"""Comparing runs: one DataFrame row per case x metric, with a verdict in a fixed vocabulary.

Status decides first (newly failing, fixed), then comparability (a changed case fingerprint, a
different schema, a skip: not comparable), then each metric against its noise: the spread of
repeats where both sides have at least MIN_REPEATS of them, else the metric's declared
rel_tolerance (suite/judge/metrics.py; cpu_rel_tolerance when every record was made on a CPU), read as a
bound on the ratio of the two values both ways.
Metrics whose direction is `none` are informational: they never get `worse` or `better`.
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import pandas as pd

from suite import paths
from suite.judge import bands, kernelclass
from suite.judge.metrics import METRICS, Metric
from suite.matrix.spec import NOT_FINGERPRINTED
from suite.records.runs import Run
from suite.report import stats
# The vocabulary, the gate and the environment diff live in their own modules; the renderers, the CLI
# and the tests read them as compare.X, so they are re-exported here.
from suite.report.envdiff import ENV_KEYS, environment_diff, flat_environment  # noqa: F401
from suite.report.gate import DEFAULT_FAIL_ON, GATES, counts, gate_fails, gated, parse_fail_on  # noqa: F401
from suite.report.verdicts import (BETTER, COLUMNS, ERRORED, FIXED, LOST, NEEDS_REPEATS, NEWLY_FAILING,  # noqa: F401
                                   NOT_COMPARABLE, RECORD, RUN, STATUS, UNFINISHED, UNREADABLE, VERDICTS,  # noqa: F401
                                   WITHIN_NOISE, WORSE, row)  # noqa: F401

FAILING = ("failed", "error")
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
        # a statistical test on the repeats: the bootstrap interval of the ratio of medians
        t = stats.ratio_test(base, cand)
        least = min(metric.rel_tolerance, metric.min_change)
        threshold = max(t.floor, least)  # the detection floor this pair of runs had
        # a verdict needs the interval to exclude "no change" and the change to be above the floor the
        # report states: nothing smaller than "changes of X% or more would show" is ever flagged
        within = not (t.significant() and abs(t.ratio - 1) > threshold)
        return _verdict(metric, within, c - b, "repeats", threshold)
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
        change = f"{(c - b) / abs(b):+.1%}" if b else f"{c - b:+.3g} {metric.unit} from 0"
        return Judgement(NEEDS_REPEATS, noise, threshold,
                         f"one run a side: by the numbers {judged.verdict} ({change}), but a single timing on a "
                         f"shared machine is no verdict; run with --repeats 3 to judge")
    return judged


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


def errored_note(bstat: str, breason: str, cstat: str, creason: str) -> str:
    """"errored in both: ..." / "errored on the candidate: ..." with the first line of the error."""
    first = lambda text: (text or "no message").strip().splitlines()[0][:300] if (text or "").strip() else "no message"
    if bstat.startswith("error") and cstat.startswith("error"):
        return f"errored in both: {first(creason)}" + ("" if first(breason) == first(creason)
                                                       else f" (baseline: {first(breason)})")
    side, reason = ("candidate", creason) if cstat.startswith("error") else ("baseline", breason)
    return f"errored on the {side}: {first(reason)}"


def outcome(records: list[dict]) -> tuple[str, str]:
    """The status of a case over its repeats (any failing repeat fails it) and the reason to show."""
    statuses = [r["status"] for r in records]
    for rec in records:
        if rec["status"] in FAILING:
            return rec["status"], rec.get("reason") or ""
    if all(s == "skipped" for s in statuses):
        return "skipped", records[0].get("reason") or ""
    return "passed", ""


def case_diff(base: dict, cand: dict) -> str:
    """What differs between two resolved cases, e.g. `training.learning_rate 0.01 → 0.005`."""
    fb, fc = _flatten(base), _flatten(cand)
    parts = [f"{k} {fb.get(k, '(none)')} → {fc.get(k, '(none)')}" for k in sorted(set(fb) | set(fc))
             if k.split(".")[0] not in NOT_FINGERPRINTED and fb.get(k) != fc.get(k)]
    return ", ".join(parts) if parts else "the fingerprint differs"


def _flatten(doc: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _incomparable(brecs: list[dict], crecs: list[dict], bstat: str, cstat: str,
                  breason: str, creason: str) -> list[str]:
    """Why a pair of cases cannot be compared metric by metric (empty: it can)."""
    why = []
    bv, cv = {r["schema_version"] for r in brecs}, {r["schema_version"] for r in crecs}
    if bv != cv:
        why.append(f"schema_version {'/'.join(map(str, sorted(bv)))} vs {'/'.join(map(str, sorted(cv)))}")
    if {r["fingerprint"] for r in brecs} != {r["fingerprint"] for r in crecs}:
        why.append("case changed: " + case_diff(brecs[0]["case"], crecs[0]["case"]))
    if bstat == cstat == "skipped" and breason == creason:
        why.append(f"skipped in both runs: {breason}")
    else:
        if bstat == "skipped":
            why.append(f"skipped in the baseline: {breason}")
        if cstat == "skipped":
            why.append(f"skipped in the candidate: {creason}")
    return why


def metric_values(records: list[dict], name: str) -> list[float]:
    """The finite values of one metric across records (repeats); records without it add nothing."""
    out = []
    for rec in records:
        value = rec["metrics"].get(name, {}).get("value") if isinstance(rec["metrics"].get(name), dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append(float(value))
    return out


def _device(records: list[dict]) -> str | None:
    """The device type all records were made on ("cpu", "cuda"), or None when they differ."""
    kinds = {(r.get("device") or {}).get("type") for r in records}
    return kinds.pop() if len(kinds) == 1 else None


# Metrics whose tolerance is tight, and the cross-class band (suite/judge/bands.py) that judges them
# when the two sides ran on different kernel classes: a nightly fleet that switches runners must not
# read as a regression at every switch (the band says how far the classes' own references lie apart).
CROSS_CLASS = {"reload_max_abs_logit_diff": ("reload_logits", "value"),
               "reference_max_abs_logit_diff": ("reference_untouched", "value"),
               "final_loss": ("golden_curve", "atol"), "initial_loss": ("golden_curve", "atol")}


def classes_of(records: list[dict]) -> str:
    """The kernel classes records ran on (records from before classes were named: from device.kernels)."""
    names = {r.get("kernel_class") or kernelclass.of_record(r).name for r in records}
    return ", ".join(sorted(names))


def cross_class_band(metric: str, method: str, profile: str = "cpu") -> tuple[float, str] | None:
    """The measured cross-class band of a tight metric for a method: (width, where it was measured)."""
    if metric not in CROSS_CLASS:
        return None
    check, field = CROSS_CLASS[metric]
    band = bands.load(paths.baselines_root(), profile).for_check(str(method), check)
    return None if band is None else (getattr(band, field), band.source)


def cross_class(metric: str, brecs: list[dict], crecs: list[dict], diff: float) -> str | None:
    """Where the sides ran on different kernel classes and a tight metric moved by no more than the
    measured cross-class band: the note that says so (None: judge as usual)."""
    bcls, ccls = classes_of(brecs), classes_of(crecs)
    if bcls == ccls:
        return None
    rec = (crecs or brecs)[0]
    method = (rec.get("case") or {}).get("method")
    band = cross_class_band(metric, str(method), (rec.get("budgets") or {}).get("profile") or "cpu")
    if band is None or abs(diff) > band[0]:
        return None
    return (f"kernel classes differ ({bcls} -> {ccls}): within the measured cross-class band for {method} "
            f"({band[0]:.3g}; {band[1]})")


def _metric_names(brecs: list[dict], crecs: list[dict]) -> list[str]:
    names = {n for r in brecs + crecs for n in r["metrics"]}
    order = list(METRICS)
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def _metric_rows(case_id: str, brecs: list[dict], crecs: list[dict], comparable: bool) -> list[dict]:
    rows = []
    for name in _metric_names(brecs, crecs):
        described = next((r["metrics"][name] for r in brecs + crecs if name in r["metrics"]), {})
        metric = metric_for(name, described if isinstance(described, dict) else {})
        metric = replace(metric, rel_tolerance=metric.tolerance_for(_device(brecs + crecs)))
        base, cand = metric_values(brecs, name), metric_values(crecs, name)
        fields = dict(unit=metric.unit, better=metric.better, n_baseline=len(base), n_candidate=len(cand))
        if not base or not cand:
            side = "baseline" if not base else "candidate"
            rows.append(row(case_id, name, NOT_COMPARABLE, f"no value in the {side}",
                             baseline=statistics.median(base) if base else None,
                             candidate=statistics.median(cand) if cand else None, **fields))
            continue
        b, c = statistics.median(base), statistics.median(cand)
        j = judge(metric, base, cand)
        verdict, note = j.verdict, j.note
        if verdict in (WORSE, BETTER) and (across := cross_class(name, brecs, crecs, c - b)):
            verdict, note = WITHIN_NOISE, across
        if not comparable:
            verdict = NOT_COMPARABLE
            note = (f"by the numbers: {j.verdict}" if j.verdict != WITHIN_NOISE
                    else "by the numbers: changed (informational)" if j.note else "")
        rows.append(row(case_id, name, verdict, note, baseline=b, candidate=c,
                         ratio=c / b if b else (1.0 if c == b else math.inf),
                         change=(c - b) / abs(b) if b else (0.0 if c == b else math.inf),
                         noise=j.noise, threshold=j.threshold, **fields))
    return rows


def compare_case(case_id: str, brecs: list[dict], crecs: list[dict], lost: str = "") -> list[dict]:
    """Rows for one case: a status row when its outcome says something, then one row per metric.
    `lost` says why a case with no readable candidate record should have had one."""
    if not brecs or not crecs:
        where = "baseline" if not brecs else "candidate"
        recs = brecs or crecs
        stat = outcome(recs)[0]
        if lost and brecs and stat == "passed":
            return [row(case_id, STATUS, LOST, lost, baseline_status=stat, n_baseline=len(brecs))]
        note = f"not in the {where} run" + (f" ({lost})" if lost and brecs else "")
        return [row(case_id, STATUS, NOT_COMPARABLE, note,
                     baseline_status=stat if brecs else None, candidate_status=stat if crecs else None)]
    (bstat, breason), (cstat, creason) = outcome(brecs), outcome(crecs)
    why = _incomparable(brecs, crecs, bstat, cstat, breason, creason)
    status = dict(baseline_status=bstat, candidate_status=cstat, n_baseline=len(brecs), n_candidate=len(crecs))
    rows = []
    if cstat == "error" or (bstat == "error" and cstat != "passed"):  # error -> passed is fixed
        rows.append(row(case_id, STATUS, ERRORED, "; ".join([errored_note(bstat, breason, cstat, creason), *why]),
                         **status))
    elif bstat == "passed" and cstat in FAILING:
        rows.append(row(case_id, STATUS, NEWLY_FAILING, "; ".join([creason, *why]), **status))
    elif bstat in FAILING and cstat == "passed":
        rows.append(row(case_id, STATUS, FIXED, "; ".join([f"was: {breason}", *why]), **status))
    elif why:
        rows.append(row(case_id, STATUS, NOT_COMPARABLE, "; ".join(why), **status))
    elif bstat in FAILING and cstat in FAILING:
        rows.append(row(case_id, STATUS, WITHIN_NOISE, f"failing in both runs: {creason}", **status))
    if any(r["metrics"] for r in brecs) and any(r["metrics"] for r in crecs):  # an errored repeat has none
        for metric_row in _metric_rows(case_id, brecs, crecs, comparable=not why):
            metric_row.update(baseline_status=bstat, candidate_status=cstat)
            rows.append(metric_row)
    return rows


def slug_of(case_id: str) -> str:
    """A case id as its record's file name stem (suite/matrix/load.py's Case.slug)."""
    return case_id.replace("/", "__").replace(":", "-")


def _record_owner(run: Run, file: str, known: set[str]) -> str | None:
    """The case a record file belongs to: the manifest's listing, else its name (`<slug>[.N].json`)."""
    for case_id, names in run.listed.items():
        if file in names:
            return case_id
    stem = re.sub(r"(\.\d+)?\.json$", "", file)
    return next((c for c in sorted(known) if slug_of(c) == stem), None)


def integrity(run: Run, side: str, known: set[str] = frozenset()) -> tuple[list[dict], dict[str, str]]:
    """Rows for what a run failed to keep, and case id -> why its record is gone (for `lost`).

    Every unreadable record and every record the manifest lists that is not on disk is a row;
    a candidate with no readable manifest, or one whose manifest has no finished_at, is a row too."""
    rows, gone = [], {}
    known = set(known) | set(run.by_case()) | set(run.listed) | set(run.planned or ())
    manifest_errors = [e for e in run.errors if Path(e.path).name == "manifest.json"]
    for err in run.errors:
        if err in manifest_errors:
            continue
        file = Path(err.path).name
        owner = _record_owner(run, file, known)
        why = f"record {file} is unreadable: {err.message}"
        rows.append(row(owner or file, RECORD, UNREADABLE, f"{side}: {why}"))
        if owner:
            gone.setdefault(owner, why)
    for case_id, names in run.listed.items():
        for name in names:
            if not (run.path / name).exists():
                why = f"record {name} is listed in manifest.json but missing"
                rows.append(row(case_id, RECORD, UNREADABLE, f"{side}: {why}"))
                gone.setdefault(case_id, why)
    if side == "candidate":
        if manifest_errors:
            rows.append(row(RUN, "manifest", UNFINISHED, f"manifest.json is unreadable ({manifest_errors[0].message}): "
                                                          f"cannot tell whether the run finished"))
        elif run.manifest is None:
            rows.append(row(RUN, "manifest", UNFINISHED, "no manifest.json: cannot tell whether the run finished"))
        elif not run.manifest.get("finished_at"):
            rows.append(row(RUN, "manifest", UNFINISHED, f"manifest.json says the run did not finish (started "
                                                          f"{run.manifest.get('started_at') or '?'}; "
                                                          f"{sum(len(v) for v in run.listed.values())} records listed)"))
    for case_id in run.planned or ():
        if case_id not in gone and case_id not in run.by_case():
            gone[case_id] = "selected for the run, but no record was written (did the run stop before it?)"
    return rows, gone


def missing_rows(run: Run, gone: dict[str, str]) -> list[dict]:
    """A one-run report's rows for cases its manifest planned that have no record: lost, gated."""
    have = run.by_case()
    return [row(case_id, STATUS, LOST, f"planned in manifest.json, no record: {why}")
            for case_id, why in sorted(gone.items()) if case_id not in have]


INVARIANT_PREFIX = "invariants/"  # case ids of invariant rows: invariants/<relation> or invariants/<test>
GROWTH_NOTED = 100.0  # a discrepancy that grows this many times, still within its bound, is noted


def compare_invariants(base: dict | None, cand: dict | None) -> list[dict]:
    """One row per relation measured on either side (holds -> broken is newly failing), and a status
    row per invariant test whose outcome changed."""
    if not base or not cand:
        return []
    rows = []
    brel, crel = base.get("relations") or {}, cand.get("relations") or {}
    for name in sorted(set(brel) | set(crel)):
        b, c = brel.get(name) or {}, crel.get(name) or {}
        rel = c or b
        if b.get("measured") is None and c.get("measured") is None:
            continue
        fields = dict(unit=rel.get("unit") or "", better="higher" if rel.get("at_least") else "lower",
                      baseline=b.get("measured"), candidate=c.get("measured"), threshold=rel.get("tolerance"),
                      noise="bound")
        case_id, bound = f"{INVARIANT_PREFIX}{name}", f"{'≥' if rel.get('at_least') else '≤'} {rel.get('tolerance')}"
        if b.get("measured") is None or c.get("measured") is None:
            side, doc, other = (("baseline", base, cand) if b.get("measured") is None else ("candidate", cand, base))
            rows.append(row(case_id, "discrepancy", NOT_COMPARABLE,
                             f"not measured in the {side}: {_why_unmeasured(name, doc, other)}", **fields))
            continue
        bh, ch = bool(b.get("holds")), bool(c.get("holds"))
        bv, cv = float(b["measured"]), float(c["measured"])
        if bh and not ch:
            verdict, note = NEWLY_FAILING, f"holds → broken: {cv:.3g} against the bound {bound}: {rel.get('statement')}"
        elif ch and not bh:
            verdict, note = FIXED, f"broken → holds: {bv:.3g} → {cv:.3g} ({bound})"
        elif not bh:
            verdict, note = WITHIN_NOISE, f"broken in both runs ({bound})"
        else:
            verdict, note = WITHIN_NOISE, ""
            grew = cv / bv if bv > 0 else (math.inf if cv > 0 else 1.0)
            if not rel.get("at_least") and grew >= GROWTH_NOTED:
                note = (f"still within its bound {bound}, but grew {'from 0' if bv == 0 else f'{grew:,.0f}x'}: "
                        f"{bv:.3g} → {cv:.3g}")
        rows.append(row(case_id, "discrepancy", verdict, note, **fields))
    btests, ctests = base.get("tests") or {}, cand.get("tests") or {}
    good = ("passed", "xfailed", "xpassed")  # a strict xfail's relation is known broken; XPASS: it holds now
    berr, cerr = base.get("errors") or {}, cand.get("errors") or {}
    for test in sorted(set(btests) & set(ctests)):
        bo, co = btests[test], ctests[test]
        if co.startswith("errored") or (bo.startswith("errored") and co not in good):
            rows.append(row(f"{INVARIANT_PREFIX}{test.split('::')[-1]}", STATUS, ERRORED,
                             f"{errored_note(bo, berr.get(test, ''), co, cerr.get(test, ''))} ({test})",
                             baseline_status=bo, candidate_status=co))
            continue
        if bo == co:
            continue
        verdict = (FIXED if (bo, co) == ("xfailed", "xpassed")
                   else NEWLY_FAILING if bo in good and co not in good and not co.startswith("skipped")
                   else FIXED if co in good and bo not in good else NOT_COMPARABLE)
        rows.append(row(f"{INVARIANT_PREFIX}{test.split('::')[-1]}", STATUS, verdict, test,
                         baseline_status=bo, candidate_status=co))
    return rows


COMPAT_PREFIX = "checkpoints/"  # case ids of checkpoint-compatibility rows


def compare_checkpoints(doc: dict | None) -> list[dict]:
    """A row per checkpoint loaded across the two version sets. A baseline checkpoint the candidate
    cannot load, or loads to other outputs, is newly failing; the reverse direction (a downgrade)
    is informational."""
    rows = []
    for e in (doc or {}).get("entries") or []:
        forward = e.get("saved_in") == "baseline"
        diff = e.get("max_abs_logit_diff")
        if e.get("verdict", "").startswith("loads, same"):
            verdict, note = WITHIN_NOISE, ""
        elif forward:
            verdict = NEWLY_FAILING
            note = e.get("error") or f"outputs differ by {diff:.3g} (tolerance {e.get('tolerance')})"
        else:
            verdict = WITHIN_NOISE
            note = "informational (a downgrade): " + (e.get("error") or f"outputs differ by {diff:.3g}")
        rows.append(row(f"{COMPAT_PREFIX}{e.get('case_id')}", f"loads in the {e.get('loaded_in')}", verdict, note,
                         unit="logit", better="lower", candidate=diff))
    return rows


def _why_unmeasured(relation: str, doc: dict, other: dict) -> str:
    """What happened, on the side that did not measure a relation, to the tests that measured it on the other."""
    tests = (other.get("measured_by") or {}).get(relation) or []
    outcomes, skips = doc.get("tests") or {}, doc.get("skips") or {}
    said = [f"{t.split('::')[-1]} {outcomes.get(t, 'not run')}" + (f" ({skips[t]})" if t in skips else "")
            for t in tests]
    return "; ".join(said) if said else "its tests skipped or failed before measuring"


# Relations that say the loss itself is computed wrongly when they break in the candidate, and the
# metrics that read the loss: a "better" final loss then means nothing.
LOSS_RELATIONS = ("logged_loss", "prompt_mask.loss", "grad_accum.loss", "dpo.grad_accum.loss", "packing.run_loss")
LOSS_METRICS = ("final_loss", "initial_loss", "eval_loss_final", "eval_loss_initial")


def distrust(rows: list[dict]) -> None:
    """Loss metrics judged better or worse while a loss relation broke in the candidate: not comparable,
    untrustworthy, saying which relation (in place)."""
    broken = [r["case_id"][len(INVARIANT_PREFIX):] for r in rows
              if r["case_id"].startswith(INVARIANT_PREFIX) and r["metric"] == "discrepancy"
              and r["case_id"][len(INVARIANT_PREFIX):] in LOSS_RELATIONS and r["verdict"] == NEWLY_FAILING]
    if not broken:
        return
    for r in rows:
        if r["metric"] in LOSS_METRICS and r["verdict"] in (WORSE, BETTER, WITHIN_NOISE):
            was = r["verdict"]
            r["verdict"] = NOT_COMPARABLE
            r["note"] = (f"untrustworthy: {', '.join(broken)} broke, so the loss itself is computed wrongly "
                         f"(by the numbers: {was})" + (f"; {r['note']}" if r.get("note") else ""))


def compare_runs(baseline: Run, candidate: Run) -> pd.DataFrame:
    """The comparison of one candidate run with the baseline run."""
    bcases, ccases = baseline.by_case(), candidate.by_case()
    known = set(bcases) | set(ccases)
    brows, _ = integrity(baseline, "baseline", known)
    crows, gone = integrity(candidate, "candidate", known)
    rows = [r for case_id in sorted(set(bcases) | set(ccases))
            for r in compare_case(case_id, bcases.get(case_id, []), ccases.get(case_id, []),
                                  lost=gone.get(case_id, ""))]
    rows += brows + crows + compare_invariants(baseline.invariants, candidate.invariants)
    rows += compare_checkpoints(candidate.compat)
    distrust(rows)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["baseline_run"], df["candidate_run"] = baseline.name, candidate.name
    for col in ("baseline", "candidate", "ratio", "change", "threshold"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in ("n_baseline", "n_candidate"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    return df


def compare(baseline: Run, candidates: Iterable[Run]) -> pd.DataFrame:
    """Every candidate against the baseline, in one frame (column candidate_run tells them apart)."""
    frames = [compare_runs(baseline, cand) for cand in candidates]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


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
                metric = metric_for(name, recs[0]["metrics"].get(name))
                rows.append({"run": run.name, "case_id": case_id, "metric": name, "unit": metric.unit,
                             "better": metric.better, "value": statistics.median(values), "n": len(values),
                             "status": stat, "note": ""})
    df = pd.DataFrame(rows, columns=["run", "case_id", "metric", "unit", "better", "value", "n", "status", "note"])
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    return df
