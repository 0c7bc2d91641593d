"""The gate: which verdicts fail a report (`--fail-on`), the rows that do, and the verdict counts."""
from __future__ import annotations

from typing import Iterable

import pandas as pd

from suite.report.verdicts import (BROKEN_IN_BOTH, ERRORED, LOST, NEWLY_FAILING, NOTHING_COMPARED, UNFINISHED,
                                   UNREADABLE, VERDICTS, WORSE)

GATES = {"nothing-compared": NOTHING_COMPARED, "errored": ERRORED, "worse": WORSE, "newly-failing": NEWLY_FAILING,
         "broken-in-both": BROKEN_IN_BOTH, "lost": LOST, "unreadable": UNREADABLE,
         "unfinished": UNFINISHED}  # --fail-on spelling -> verdict
DEFAULT_FAIL_ON = ",".join(GATES)


def counts(df: pd.DataFrame) -> dict[str, int]:
    """Verdict -> number of rows, in the vocabulary's order, zeros left out."""
    got = df["verdict"].value_counts().to_dict() if len(df) else {}
    return {v: int(got[v]) for v in VERDICTS if got.get(v)}


def parse_fail_on(text: str) -> tuple[str, ...]:
    """`worse,newly-failing` -> the verdicts that fail the gate; ValueError naming what is unknown."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in GATES and n != "none"]
    if unknown:
        raise ValueError(f"--fail-on: unknown {', '.join(unknown)}; choose from {', '.join(GATES)} (or none)")
    return tuple(GATES[n] for n in names if n in GATES)


def gated(df: pd.DataFrame, fail_on: Iterable[str]) -> pd.DataFrame:
    """The rows whose verdict fails the gate."""
    return df[df["verdict"].isin(list(fail_on))] if len(df) and "verdict" in df else df.iloc[0:0]


def gate_fails(df: pd.DataFrame, fail_on: Iterable[str]) -> bool:
    return len(gated(df, fail_on)) > 0
