"""How much a comparison compared, and the `nothing compared` rows when that is nothing.

A comparison is only as good as what it compared: a candidate whose baseline errored in every case
reads "24 fixed", two runs with no case in common read "no case changed". `coverage(df)` counts, from
the comparison frame itself, the cases that ran on both sides and the relations measured on both;
`nothing_compared(...)` turns the ways a comparison compares nothing into rows about the whole run
that the gate fails on (verdicts.NOTHING_COMPARED)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from suite.records.record import CaseRecord
from suite.report.outcome import outcome
from suite.report.verdicts import NOT_COMPARABLE, NOTHING_COMPARED, RUN, row

RAN = ("passed", "failed")  # a case that ran to its checks: its metrics were measured
COVERAGE = "coverage"  # the pseudo-metric of a `nothing compared` row
PREFIXES = ("invariants/", "compat/")  # row ids that are not cases (report/invariants.py, report/compat.py)


@dataclass(frozen=True)
class Coverage:
    """What one comparison compared: cases in either run, cases that ran on both sides and were
    compared, relations measured in either and on both."""
    cases: int
    compared: int
    relations: int
    relations_compared: int

    @property
    def nothing(self) -> bool:
        return self.compared == 0 and self.relations_compared == 0

    def sentence(self) -> str:
        rel = (f"; {self.relations_compared} of {self.relations} relations measured on both sides"
               if self.relations else "")
        return f"Compared: {self.compared} of {self.cases} cases ran on both sides{rel}."


def _case_rows(df: pd.DataFrame) -> pd.DataFrame:
    ids = df["case_id"].astype(str)
    return df[~ids.str.startswith(PREFIXES) & (ids != RUN)]


def coverage(df: pd.DataFrame) -> Coverage:
    """Counted from a comparison frame: a case is compared when one of its rows has both sides ran
    (passed or failed) and is comparable; a relation when both sides measured it."""
    if not len(df):
        return Coverage(0, 0, 0, 0)
    cases = _case_rows(df)
    both = (cases["baseline_status"].isin(RAN) & cases["candidate_status"].isin(RAN)
            & (cases["verdict"] != NOT_COMPARABLE))
    relations = df[df["case_id"].astype(str).str.startswith(PREFIXES[0]) & (df["metric"] == "discrepancy")]
    measured = relations["baseline"].notna() & relations["candidate"].notna()
    return Coverage(cases["case_id"].nunique(), cases[both]["case_id"].nunique(), relations["case_id"].nunique(),
                    relations[measured]["case_id"].nunique())


def nothing_compared(bcases: dict[str, list[CaseRecord]], ccases: dict[str, list[CaseRecord]],
                     df: pd.DataFrame) -> list[dict]:
    """Rows about the whole run for each way this comparison compared nothing (empty: it compared
    something): a side errored in every case, no case in common, every common case of another schema,
    or no case that ran on both sides and no relation measured on both."""
    rows = [_all_errored(side, cases) for side, cases in (("baseline", bcases), ("candidate", ccases))]
    rows = [r for r in rows if r]
    common = sorted(set(bcases) & set(ccases))
    if not bcases or not ccases:
        empty = "baseline" if not bcases else "candidate"
        rows.append(_row(f"the {empty} run has no readable case record"))
    elif not common:
        rows.append(_row(f"no case in common: the baseline has {len(bcases)} cases, the candidate {len(ccases)} "
                         f"others (a different selection, or a renamed matrix?)"))
    elif all(_schemas(bcases[c]) != _schemas(ccases[c]) for c in common):
        bv = sorted({s for c in common for s in _versions(bcases[c])})
        cv = sorted({s for c in common for s in _versions(ccases[c])})
        rows.append(_row(f"records cannot be compared: every one of the {len(common)} common cases has records of "
                         f"schema_version {'/'.join(map(str, bv))} in the baseline and "
                         f"{'/'.join(map(str, cv))} in the candidate, whose metrics mean different things"))
    cov = coverage(df)
    if not rows and cov.nothing:
        rows.append(_row(f"no case ran on both sides ({cov.cases} cases: skipped, errored, changed or in one run "
                         f"only) and no relation was measured on both"))
    return rows


def _all_errored(side: str, cases: dict[str, list[CaseRecord]]) -> dict | None:
    """A row when every case of a side that was not skipped errored: that side never ran, whatever the
    other did."""
    outcomes = {case_id: outcome(recs) for case_id, recs in cases.items()}
    tried = {c: o for c, o in outcomes.items() if o[0] != "skipped"}
    if not tried or any(stat != "error" for stat, _ in tried.values()):
        return None
    first = next(iter(sorted(tried.items())))[1][1].strip().splitlines()
    skipped = len(outcomes) - len(tried)
    return _row(f"the {side} errored in every case it ran ({len(tried)} of {len(tried)}"
                + (f"; {skipped} skipped" if skipped else "") + "), so nothing of it was compared"
                + (f": {first[0][:240]}" if first else ""), **{f"{side}_status": "error"})


def _schemas(recs: list[CaseRecord]) -> set:
    return {r.metrics_schema for r in recs}


def _versions(recs: list[CaseRecord]) -> set:
    return {r.schema_version for r in recs}


def _row(note: str, **fields: object) -> dict:
    return row(RUN, COVERAGE, NOTHING_COMPARED, note, **fields)
