"""Which rows of a comparison a report shows, and how: news first, the rest counted or listed apart."""
from __future__ import annotations

import pandas as pd

from suite.report import compare

# Status rows that are not news, listed apart by name: what this machine cannot run, and cases
# that one run did not select (a -m/-k subset). Label -> (baseline status, candidate status).
APART = {"skipped in both runs": ("skipped", "skipped"), "only in the baseline run": ("*", None),
         "only in the candidate run": (None, "*")}
LIST_IDS = 12  # ids named in a Markdown line before "... and N more"


def apart(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Label -> the status rows of that kind (labels with no row left out)."""
    if not len(df):
        return {}
    status = df[(df["metric"] == compare.STATUS) & (df["verdict"] == compare.NOT_COMPARABLE)]
    out = {}
    for label, (b, c) in APART.items():
        match = [(status[col].isna() if want is None else status[col].notna() if want == "*"
                  else status[col] == want) for col, want in (("baseline_status", b), ("candidate_status", c))]
        rows = status[match[0] & match[1]]
        if len(rows):
            out[label] = rows
    return out


def flagged(df: pd.DataFrame, with_apart: bool = True) -> pd.DataFrame:
    """Rows that say something: every verdict but `within noise`, except incomparable metric rows
    whose numbers did not move (a changed case's status row already says why)."""
    if not len(df):
        return df
    keep = df["verdict"] != compare.WITHIN_NOISE
    quiet = (df["verdict"] == compare.NOT_COMPARABLE) & (df["metric"] != compare.STATUS) & (
        df["note"].fillna("") == "") & df["baseline"].notna() & df["candidate"].notna()
    keep |= (df["metric"] == compare.STATUS) & (df["verdict"] == compare.WITHIN_NOISE)  # still failing
    if not with_apart:
        for rows in apart(df).values():
            keep &= ~df.index.isin(rows.index)
    out = df[keep & ~quiet].copy()
    # By kind first (what is wrong leads), then by urgency, then by case.
    out["_kind"] = [kind_of(r) for _, r in out.iterrows()]
    out["_order"] = out["verdict"].map(compare.VERDICTS.index)
    out["_metric"] = out["metric"] != compare.STATUS  # a case's status row before its metrics
    return out.sort_values(["_kind", "_order", "case_id", "_metric", "metric"], kind="stable").drop(
        columns=["_kind", "_order", "_metric"])


KINDS = ("nothing compared", "broken relations and compatibility", "failing and errored cases",
         "counted work, memory and outputs", "timing", "the rest")


def kind_of(row) -> int:
    """The rank of a row's kind in KINDS: a comparison that compared nothing, then broken relations and
    checkpoint compatibility, then case outcomes, then counted work and memory, then timing;
    improvements, known-broken relations and the informational last."""
    from suite.judge.metrics import METRICS

    if row["verdict"] == compare.NOTHING_COMPARED:
        return 0
    if row["verdict"] in (compare.FIXED, compare.BETTER, compare.NOT_COMPARABLE, compare.NEEDS_REPEATS,
                          compare.KNOWN_BROKEN):
        return 4 if row["verdict"] == compare.NEEDS_REPEATS else 5
    case_id = str(row["case_id"])
    if case_id.startswith((compare.INVARIANT_PREFIX, compare.COMPAT_PREFIX)):
        return 1
    if row["metric"] in (compare.STATUS, compare.RECORD, "manifest"):
        return 2
    metric = METRICS.get(row["metric"])
    return 4 if metric is not None and metric.timing else 3


def gate_summary(df: pd.DataFrame, fail_on: tuple[str, ...]) -> tuple[bool, str]:
    """(does the gate fail?, the counts that follow the verdict in a headline)."""
    counts = compare.counts(df)
    cases = {v: df[df["verdict"] == v]["case_id"].nunique() for v in counts}
    parts = [f"{n} {v}" + (f" in {cases[v]} cases" if cases[v] != n else "") for v, n in counts.items()]
    rest = f" (fails on: {', '.join(fail_on) or 'nothing'}) · " + (" · ".join(parts) or "nothing compared")
    return compare.gate_fails(df, fail_on), rest


def headline(df: pd.DataFrame, fail_on: tuple[str, ...]) -> str:
    fails, rest = gate_summary(df, fail_on)
    return ("**Gate: fails**" if fails else "**Gate: passes**") + rest


def invariant_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The relation rows of a comparison (empty when neither run ran the invariants)."""
    if not len(df):
        return df
    return df[df["case_id"].str.startswith(compare.INVARIANT_PREFIX) & (df["metric"] == "discrepancy")]


def checkpoint_rows(doc: dict | None) -> list[list[str]]:
    """The cells of the checkpoint-compatibility table: one row per checkpoint and direction."""
    rows = []
    for e in (doc or {}).get("entries") or []:
        diff = e.get("max_abs_logit_diff")
        rows.append([e.get("case_id", "?"), e.get("route", "-"), e.get("saved_in", "?"), e.get("loaded_in", "?"),
                     e.get("verdict", "?") + (f" by {diff:.3g}" if e.get("verdict") == "loads, outputs differ" else ""),
                     "-" if diff is None else f"{diff:.3g} (≤ {e.get('tolerance')})", e.get("keys") or "-",
                     e.get("error") or "; ".join(e.get("load_warnings") or []) or "-"])
    return rows
