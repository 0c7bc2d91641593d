"""Comparing runs: one DataFrame row per case x metric, with a verdict in a fixed vocabulary
(suite/report/verdicts.py).

Status decides first (newly failing, fixed), then comparability (a changed case fingerprint, a
different schema, a skip: not comparable; suite/report/outcome.py), then each metric against its
noise (suite/report/judgement.py).
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import pandas as pd

from suite.judge.metrics import METRICS
from suite.records.runs import Run
# The vocabulary, judging a metric, a case's outcome, the gate and the environment diff live in their own
# modules; the renderers, the CLI and the tests read them as compare.X, so they are re-exported here.
from suite.report.envdiff import ENV_KEYS, environment_diff, flat_environment  # noqa: F401
from suite.report.gate import DEFAULT_FAIL_ON, GATES, counts, gate_fails, gated, parse_fail_on  # noqa: F401
from suite.report.judgement import (CROSS_CLASS, MIN_REPEATS, Judgement, classes_of, cross_class,  # noqa: F401
                                    cross_class_band, device_of, judge, metric_for, metric_values,  # noqa: F401
                                    spread)  # noqa: F401
from suite.report.outcome import FAILING, case_diff, errored_note, incomparable, outcome  # noqa: F401
from suite.report.verdicts import (BETTER, COLUMNS, ERRORED, FIXED, LOST, NEEDS_REPEATS, NEWLY_FAILING,  # noqa: F401
                                   NOT_COMPARABLE, RECORD, RUN, STATUS, UNFINISHED, UNREADABLE, VERDICTS,  # noqa: F401
                                   WITHIN_NOISE, WORSE, row)  # noqa: F401


def _metric_names(brecs: list[dict], crecs: list[dict]) -> list[str]:
    names = {n for r in brecs + crecs for n in r["metrics"]}
    order = list(METRICS)
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def _metric_rows(case_id: str, brecs: list[dict], crecs: list[dict], comparable: bool) -> list[dict]:
    rows = []
    for name in _metric_names(brecs, crecs):
        described = next((r["metrics"][name] for r in brecs + crecs if name in r["metrics"]), {})
        metric = metric_for(name, described if isinstance(described, dict) else {})
        metric = replace(metric, rel_tolerance=metric.tolerance_for(device_of(brecs + crecs)))
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
    why = incomparable(brecs, crecs, bstat, cstat, breason, creason)
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
