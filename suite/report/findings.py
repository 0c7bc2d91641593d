"""Findings: one failure shared by several cases, said once. The canary of 2026-12-07 read as 46
unrelated crashes where it was one finding (transformers' PEFT integration refused peft 0.21.2 in one
load route of every adapter case); grouped, it reads "46 cases: route `load_adapter` raised ValueError:
... >= 0.22.0".

A failure is a failed check of a failed record (keyed by the check's name and what it raised, else its
message), an error record (keyed by its reason), or an invariant test that raised (keyed by what it
raised). Messages are normalised before they are compared: the case's own id, absolute paths, memory
addresses and numbers (a dotted version such as 0.22.0 is kept) stand for any. Both renderers call
`findings`; neither groups anything itself."""
from __future__ import annotations

import re
from dataclasses import dataclass

from suite.records.runs import Run

MIN_CASES = 2  # a failure of one case is in the changes table already; a finding is shared
ERROR = "error"  # the check name of an error record's finding (the case ended before it was judged)
INVARIANT_TEST = "invariant test"  # the check name of an invariant test's finding

_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?/(?:[\w.+~-]+/)*[\w.+~-]+/?")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+\b")
# a number that is not part of a dotted version (0.22.0) nor of a word (bf16, sm90)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:(?![\w.])|(?=\.(?:\s|$)))")


@dataclass(frozen=True)
class Finding:
    check: str  # the check's name (`reload/load_adapter`), ERROR or INVARIANT_TEST
    key: str  # the normalised message the cases share
    example: str  # one case's message as recorded, its case id left out
    cases: tuple[str, ...]  # the case ids (invariant tests: their names), sorted
    raised: bool  # the failure is an exception
    in_baseline: int | None = None  # of these cases, how many failed the same way in the baseline (a comparison)

    @property
    def label(self) -> str:
        """What failed, in words: a load route, a check, an error before judging, an invariant test."""
        if self.check.startswith("reload/"):
            return f"route `{self.check.removeprefix('reload/')}`"
        if self.check == ERROR:
            return "errored"
        if self.check == INVARIANT_TEST:
            return "invariant test"
        return f"check `{self.check}`"

    @property
    def headline(self) -> str:
        """The finding in one line, e.g. '46 cases: route `load_adapter` raised ValueError: ...'."""
        what = "raised " if self.raised and self.check != ERROR else ""
        noun = "invariant tests" if self.check == INVARIANT_TEST else "cases"
        return f"{len(self.cases)} {noun}: {self.label} {what}{self.example}"


def normalise(message: str, case_id: str = "") -> str:
    """A message with what differs between cases replaced: its case id, paths, addresses, numbers."""
    text = " ".join(str(message).split())
    if case_id:
        text = text.removeprefix(f"{case_id}: ").replace(case_id, "<case>")
    text = _ADDRESS.sub("<address>", _PATH.sub("<path>", text))
    return _NUMBER.sub("#", text)


def _failures(run: Run) -> dict[tuple[str, str], tuple[set[str], str, bool]]:
    """(check, normalised message) -> (case ids, one recorded message, raised?) of a run."""
    out: dict[tuple[str, str], tuple[set[str], str, bool]] = {}

    def add(check: str, case_id: str, message: str, raised: bool) -> None:
        shown = " ".join(message.split()).removeprefix(f"{case_id}: ")
        cases, _, _ = out.setdefault((check, normalise(message, case_id)), (set(), shown, raised))
        cases.add(case_id)

    for rec in run.records:
        if rec.status == "error":
            add(ERROR, rec.case_id, (rec.reason or "no message").strip().splitlines()[0], True)
        elif rec.status == "failed":
            for check in rec.failed_checks:
                raised = check.get("raised")
                add(str(check["name"]), rec.case_id, str(raised or check.get("message") or ""), bool(raised))
    errors = (run.invariants or {}).get("errors") or {}
    for test, message in errors.items():
        add(INVARIANT_TEST, str(test).split("::")[-1], str(message), True)
    return out


def findings(run: Run, baseline: Run | None = None, min_cases: int = MIN_CASES) -> list[Finding]:
    """The failures `run` shares across at least `min_cases` cases, most cases first; with a baseline, how
    many of those cases failed the same way there."""
    before = _failures(baseline) if baseline is not None else {}
    out = []
    for (check, key), (cases, example, raised) in _failures(run).items():
        if len(cases) < min_cases:
            continue
        in_baseline = len(cases & before.get((check, key), (set(), "", False))[0]) if baseline is not None else None
        out.append(Finding(check, key, example, tuple(sorted(cases)), raised, in_baseline))
    return sorted(out, key=lambda f: (-len(f.cases), f.check, f.key))
