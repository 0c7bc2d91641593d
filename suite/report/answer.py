"""The answer first: a comparison's title names the change and says whether it is safe, then one line
per finding with the next step. Both renderers (markdown.py, html.py) put these on top; they read the
comparison frame (suite/report/compare.py), the environment diff, and the title's count of failing or worse
cases that no check names a cause for (suite/report/causes.py, from the candidate's records), nothing else.

    peft 0.18.0 → 0.21.2: not safe: 2 broken relations, 2 cases worse; 1 case with no check naming a cause
    - 2 broken relations: `moe.aux_loss.counted_once` broken in both (0.206, bound ≤ 1e-05), ... Next: ...
    - memory +12 % in 4 cases, measured once a side: not judged. Next: measure it 3 times a side ...
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from suite.judge.metrics import METRICS
from suite.records.runs import Run
from suite.report import causes, compare

LIST = 4  # ids named in a finding's line before "and N more"


@dataclass(frozen=True)
class Finding:
    """One line: what was found (how many, which), and the next step."""
    what: str
    next_step: str
    gated: bool

    def line(self) -> str:
        return f"{self.what}. Next: {self.next_step}"


def change(base: Run, cand: Run) -> str:
    """What differs between the two runs in a title: the packages whose versions changed, else the runs."""
    diff = compare.environment_diff(base, cand)
    pk = diff[diff["changed"] & diff["package"]]
    if len(pk):
        return ", ".join(f"{r.field} {r.baseline} → {r.candidate}" for r in pk.itertuples())
    return f"{cand.name} vs baseline {base.name}"


def verdict(df: pd.DataFrame, fail_on: tuple[str, ...], upgrade: bool) -> str:
    """`safe` / `not safe: 2 broken relations, 1 load route` (an upgrade: packages changed), else
    `passes` / `fails: ...`."""
    gated = compare.gated(df, fail_on)
    if not len(gated):
        return "safe" if upgrade else "passes"
    counts = [f"{n} {noun}" for noun, n in _gated_counts(gated)]
    return ("not safe: " if upgrade else "fails: ") + ", ".join(counts)


def title(df: pd.DataFrame, base: Run, cand: Run, fail_on: tuple[str, ...], what: str | None = None) -> str:
    """`what` names the change where the caller knows it better than the records (upgrade-check's resolved
    versions include pinned packages beyond the stack the records list)."""
    upgrade = bool(what) or not change(base, cand).endswith(f"vs baseline {base.name}")
    unnamed = causes.headline_suffix(causes.of_comparison(df, cand))  # failing or worse, and no check says why
    return f"{what or change(base, cand)}: {verdict(df, fail_on, upgrade=upgrade)}{unnamed}"


def versions_changed(base: dict, cand: dict) -> str:
    """`nvidia-ml-py 13.610.43 → 13.615.71` from two sides' resolved versions (package -> version)."""
    return ", ".join(f"{k} {base.get(k)} → {cand.get(k)}" for k in dict.fromkeys([*base, *cand])
                     if base.get(k) != cand.get(k))


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _gated_counts(gated: pd.DataFrame) -> list[tuple[str, int]]:
    """(noun, count) of what the gate failed on, most serious first."""
    out = []
    for key, rows in _groups(gated):
        n = rows["case_id"].nunique()
        out.append((NOUNS[key][0] if n == 1 else NOUNS[key][1], n))
    return out


# group key -> (one, many)
NOUNS = {
    "nothing": ("comparison that compared nothing", "comparisons that compared nothing"),
    "relations": ("broken relation", "broken relations"),
    "routes": ("load route", "load routes"),
    "errored": ("errored case", "errored cases"),
    "failing": ("newly failing case", "newly failing cases"),
    "kept": ("lost or unreadable record", "lost or unreadable records"),
    "unfinished": ("unfinished run", "unfinished runs"),
    "worse": ("case worse", "cases worse"),
    "slower": ("case slower", "cases slower"),
}


def _key(r) -> str:
    case_id, v = str(r["case_id"]), r["verdict"]
    if v == compare.NOTHING_COMPARED:
        return "nothing"
    if case_id.startswith(compare.INVARIANT_PREFIX):
        return "relations"
    if case_id.startswith(compare.COMPAT_PREFIX):
        return "routes"
    if v == compare.ERRORED:
        return "errored"
    if v == compare.NEWLY_FAILING:
        return "failing"
    if v in (compare.LOST, compare.UNREADABLE):
        return "kept"
    if v == compare.UNFINISHED:
        return "unfinished"
    return "slower" if getattr(METRICS.get(str(r["metric"])), "timing", False) else "worse"


def _groups(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    keys = [_key(r) for _, r in rows.iterrows()]
    order = list(NOUNS)
    return sorted(((k, rows[[x == k for x in keys]]) for k in set(keys)), key=lambda kv: order.index(kv[0]))


def _ids(rows: pd.DataFrame, strip: str = "") -> str:
    ids = list(dict.fromkeys(str(c)[len(strip):] for c in rows["case_id"]))
    more = f" and {len(ids) - LIST} more" if len(ids) > LIST else ""
    return ", ".join(f"`{i}`" for i in ids[:LIST]) + more


def _first_note(rows: pd.DataFrame, width: int = 160) -> str:
    notes = [str(n) for n in rows["note"] if isinstance(n, str) and n]
    return (notes[0][:width] + ("…" if len(notes[0]) > width else "")) if notes else ""


def findings(df: pd.DataFrame, fail_on: tuple[str, ...]) -> list[Finding]:
    """One finding per kind of gated row, most serious first, then the changes measured once a side
    (not gated, but the next step is to measure them properly)."""
    out = [_finding(key, rows) for key, rows in _groups(compare.gated(df, fail_on))]
    return out + _once_a_side(df)


def _finding(key: str, rows: pd.DataFrame) -> Finding:
    n = rows["case_id"].nunique()
    noun = NOUNS[key][0] if n == 1 else NOUNS[key][1]
    note = _first_note(rows)
    if key == "nothing":
        return Finding(f"Nothing compared: {note}", "make the side that compared nothing run (its first error is "
                       "named), or compare runs that share cases and versions", True)
    if key == "relations":
        names = _ids(rows, compare.INVARIANT_PREFIX)
        expr = " or ".join(str(c)[len(compare.INVARIANT_PREFIX):].split(".")[0] for c in rows["case_id"][:LIST])
        return Finding(f"{n} {noun}: {names} ({note})", f"`python -m pytest tests/invariants -k \"{expr}\"` in the "
                       "candidate's environment; docs/checks.md says what each relation catches", True)
    if key == "routes":
        return Finding(f"{n} checkpoint(s) that do not load across the versions, as a user would: {_ids(rows, compare.COMPAT_PREFIX)}"
                       f" ({note})", "load one by that route in the candidate's environment; the compatibility "
                       "table below names the route and the error", True)
    if key in ("errored", "failing"):
        first = str(rows["case_id"].iloc[0])
        return Finding(f"{n} {noun}: {_ids(rows)} ({note})", f"`python -m suite run -k \"{first}\"` reproduces "
                       "one; its record's checks (or failure) say what broke", True)
    if key == "unfinished":
        return Finding(f"The candidate run is unfinished: {note}", "run the same command with the same --run-id "
                       "again to write what is missing; a lost record is never a green", True)
    if key == "kept":
        return Finding(f"{n} {noun}: {_ids(rows)} ({note})", "run the same command with the same --run-id again to "
                       "write what is missing; a lost record is never a green", True)
    metrics = ", ".join(dict.fromkeys(str(m) for m in rows["metric"]))
    step = ("it was judged from repeats; `python -m suite bisect` names the release that made it slower"
            if key == "slower" else "losses, outputs, memory and counted work repeat on one machine, so the change is the versions': "
                 "`python -m suite bisect` names the first release (or commit) that makes it")
    return Finding(f"{n} {noun} ({metrics}): {_ids(rows)}", step, True)


def _pct(change: float) -> str:
    """A relative change in words; one from a value near zero (a metric of microseconds) is not a percentage."""
    return f"{change:+.0%}" if abs(change) < 10 else ("more than 10x" if change > 0 else "-100%")


def _once_a_side(df: pd.DataFrame) -> list[Finding]:
    """Timing and memory measured once a side (`needs repeats`), one line per kind."""
    rows = df[df["verdict"] == compare.NEEDS_REPEATS] if len(df) else df
    out = []
    for kind, pick in (("memory", lambda m: m is not None and m.unit == "GiB"),
                       ("timing", lambda m: m is not None and m.timing)):
        sel = rows[[pick(METRICS.get(str(m))) for m in rows["metric"]]] if len(rows) else rows
        if not len(sel):
            continue
        changes = pd.to_numeric(sel["change"], errors="coerce").dropna()
        span = (f" {_pct(changes.min())} to {_pct(changes.max())}" if len(changes) > 1 and changes.min() != changes.max()
                else f" {_pct(changes.iloc[0])}" if len(changes) else "")
        n = sel["case_id"].nunique()
        out.append(Finding(f"{kind}{span} in {n} {_plural(n, 'case', 'cases')}, measured once a side: not judged "
                           f"({_ids(sel)})", "rerun with `--repeats 3` (upgrade-check), or run each --run-id again "
                           "twice: with 3 records a side it is judged against its spread", False))
    return out
