"""What named a failure: for every failing or worse case, the checks and relations that failed, by name,
each with its message's first line (issue 36).

A case whose only failure is its golden curve (the loss curve left its reference), or that is worse than
its baseline while every check passed, has no check naming a cause: it reads "the loss curve moved; no
check names a cause" (or "no check names a cause") in its own line, and the reports count such cases in
their headline, so a maintainer knows to look deeper (a curve's catch also depends on a reference for
the machine's kernel class, which no GPU runner has). A golden-curve failure that is not a moved curve
(no reference yet, another configuration) names its own cause. An errored case is named by what it
raised. Both renderers (markdown.py, html.py) and the comparison's title (answer.py) read `Cause`s;
none of them looks at a check itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from suite.judge.baselines import curve_moved
from suite.judge.metrics import METRICS
from suite.records.record import CaseRecord
from suite.records.runs import Run
from suite.report.compat import COMPAT_PREFIX
from suite.report.invariants import INVARIANT_PREFIX
from suite.report.outcome import FAILING, outcome
from suite.report.verdicts import STATUS, WORSE

NO_CAUSE = "no check names a cause"
CURVE_MOVED = "the loss curve moved; " + NO_CAUSE
UNNAMED = "with no check naming a cause"  # the headline's count: "2 failed (1 with no check naming a cause)"
WIDTH = 160  # characters of a message's first line shown


@dataclass(frozen=True)
class Named:
    """One failed check (or relation) of a case: its name and its message's first line. `check` is None for
    a failed record that lists no failed check (a record written before checks were recorded): its reason."""
    check: str | None
    message: str


@dataclass(frozen=True)
class Cause:
    """What named one failing or worse case's failure, or that nothing did."""
    case_id: str
    status: str  # the case's outcome over its repeats: failed, error, or passed (worse than its baseline)
    named: tuple[Named, ...] = ()  # the failed checks other than a moved curve, in the order recorded
    curve_moved: bool = False  # its golden-curve check failed: the loss curve left its reference
    worse: tuple[str, ...] = ()  # the metrics worse than the baseline's (a comparison), timing left out
    error: str = ""  # an errored case: the first line of what it raised

    @property
    def unnamed(self) -> bool:
        """Failing or worse, and neither a check nor an error says why."""
        return not self.named and not self.error

    @property
    def label(self) -> str:
        """How the case stands: `failed`, `errored`, `worse: final_loss`, `failed; worse: final_loss`."""
        parts = ["errored" if self.status == "error" else self.status] if self.status in FAILING else []
        if self.worse:
            parts.append("worse: " + ", ".join(self.worse))
        return "; ".join(parts) or self.status

    @property
    def unnamed_text(self) -> str:
        return CURVE_MOVED if self.curve_moved else NO_CAUSE

    @property
    def also(self) -> str:
        """What follows the named checks: that the curve moved as well, where it did."""
        return "the loss curve moved too" if self.curve_moved and self.named else ""


def first_line(message: object, case_id: str = "") -> str:
    """A message's first non-empty line, its leading case id left out, cut to WIDTH characters."""
    lines = [line.strip() for line in str(message or "").strip().splitlines() if line.strip()]
    line = lines[0].removeprefix(f"{case_id}: ") if lines else "no message"
    return line if len(line) <= WIDTH else line[:WIDTH - 1] + "…"


def of_records(case_id: str, records: list[CaseRecord], worse: tuple[str, ...] = ()) -> Cause | None:
    """The cause of one case over its repeats; None when it neither failed nor is worse."""
    if not records:
        return Cause(case_id, "passed", worse=worse) if worse else None
    status, reason = outcome(records)
    if status not in FAILING and not worse:
        return None
    if status == "error":
        return Cause(case_id, status, worse=worse, error=first_line(reason, case_id))
    named: dict[str, Named] = {}
    moved = False
    for rec in records:
        if rec.status != "failed":
            continue
        for check in rec.failed_checks:
            if curve_moved(check):
                moved = True
            elif check["name"] not in named:
                named[check["name"]] = Named(check["name"], first_line(check.get("message") or check.get("raised"),
                                                                       case_id))
        if not rec.failed_checks and rec.reason:
            named.setdefault("", Named(None, first_line(rec.reason, case_id)))
    return Cause(case_id, status, tuple(named.values()), moved, worse)


def of_run(run: Run) -> list[Cause]:
    """Every failing case of one run, by case id."""
    found = (of_records(case_id, recs) for case_id, recs in sorted(run.by_case().items()))
    return [c for c in found if c is not None]


def worse_metrics(df: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """case id -> the metrics a comparison found worse (its own cases; timing, which no check judges, and
    relations and checkpoint routes, which name themselves, left out)."""
    if not len(df):
        return {}
    rows = df[(df["verdict"] == WORSE) & ~df["case_id"].astype(str).str.startswith((INVARIANT_PREFIX, COMPAT_PREFIX))]
    out: dict[str, tuple[str, ...]] = {}
    for case_id, metric in zip(rows["case_id"], rows["metric"]):
        if not getattr(METRICS.get(str(metric)), "timing", False):
            out[str(case_id)] = (*out.get(str(case_id), ()), str(metric))
    return out


def of_comparison(df: pd.DataFrame, cand: Run) -> list[Cause]:
    """Every case of the candidate that fails, or is worse than the baseline, by case id."""
    worse = worse_metrics(df)
    by_case = cand.by_case()
    found = (of_records(case_id, by_case.get(case_id, []), worse.get(case_id, ()))
             for case_id in sorted(set(by_case) | set(worse)))
    return [c for c in found if c is not None]


def unnamed_cases(frame: pd.DataFrame, candidates: list[Run]) -> list[str]:
    """The failing or worse cases of every candidate that no check names a cause for (upgrade-check's summary)."""
    return [c.case_id for cand in candidates
            for c in of_comparison(frame[frame["candidate_run"] == cand.name], cand) if c.unnamed]


def unnamed_count(causes: list[Cause]) -> int:
    return sum(c.unnamed for c in causes)


def headline_suffix(causes: list[Cause]) -> str:
    """`; 1 case with no check naming a cause` for a comparison's title ("" when every failure is named)."""
    n = unnamed_count(causes)
    return f"; {n} {'case' if n == 1 else 'cases'} {UNNAMED}" if n else ""


def status_counts(summary: pd.DataFrame, failing: list[Cause]) -> list[str]:
    """A one-run report's headline words from its summary frame (compare.summarize): `4 passed`,
    `2 failed (1 with no check naming a cause)`, `1 error`, `1 skipped`."""
    counts = summary[summary["metric"] == STATUS]["status"].value_counts().to_dict()
    unnamed = unnamed_count(failing)
    said = {"failed": f" ({unnamed} {UNNAMED})" if unnamed else ""}
    return [f"{counts[s]} {s}{said.get(s, '')}" for s in ("passed", "failed", "error", "skipped") if counts.get(s)]


INTRO = ("Each failing or worse case with the checks and relations that failed, by name, and the first line of "
         f"each message. \"{NO_CAUSE}\": the case failed only its golden curve, or is worse than its baseline "
         "with every check passing; look deeper (docs/reports.md).")
