"""What a run's checks could not judge: the checks that passed nothing and failed nothing, by name.

A check that cannot judge a case (no bound measured for its precision, nothing of what it holds happened:
no clipping configured, an optimizer whose update has no formula here) records `judged: false` with why
(suite/checkresult.py `not_judged`). It does not fail the case, and it is not a pass either: the reports
count such checks apart, per check, with the reason most cases gave, so that a green says what it did
not judge. Records written before the field existed count every check as judged.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from suite.records.runs import Run

WIDTH = 120  # characters of a reason shown
_CASE = re.compile(r"^.*?: not judged: ")  # "<case id>: not judged: <why>"


@dataclass(frozen=True)
class Unjudged:
    """One check that could not judge some of a run's cases: in how many, and the reason most gave."""
    check: str
    cases: int
    reason: str
    reasons: int  # how many distinct reasons the cases gave

    def text(self) -> str:
        more = f"; {self.reasons - 1} other reason{'s' if self.reasons > 2 else ''}" if self.reasons > 1 else ""
        return f"{self.check} in {self.cases} case{'s' if self.cases != 1 else ''} ({self.reason}{more})"


def reason(message: str) -> str:
    """A not-judged check's reason without its case id, cut to WIDTH."""
    why = _CASE.sub("", message.splitlines()[0] if message else "", count=1)
    return why if len(why) <= WIDTH else why[: WIDTH - 1] + "…"


def of_run(run: Run) -> list[Unjudged]:
    """Per check, the cases of the run (any repeat) where it could not judge; most cases first."""
    per_check: dict[str, dict[str, str]] = {}
    for case_id, records in run.by_case().items():
        for rec in records:
            for check in rec.unjudged_checks():
                per_check.setdefault(check["name"], {}).setdefault(case_id, reason(check.get("message") or ""))
    out = []
    for name, cases in per_check.items():
        common = Counter(cases.values()).most_common()
        out.append(Unjudged(name, len(cases), common[0][0], len(common)))
    return sorted(out, key=lambda u: (-u.cases, u.check))


def sentence(found: list[Unjudged]) -> str:
    """One line for a report, or "" when every check judged."""
    if not found:
        return ""
    return "Not judged (neither passed nor failed): " + "; ".join(u.text() for u in found) + "."
