"""A report's data: the runs, the comparison frame (suite/report/compare.py), what could not be read, and
whether the gate fails. The renderers (markdown.py, html.py) read it; neither decides anything."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from suite.errors import RecordError
from suite.records.runs import Run
from suite.report import compare


@dataclass
class Report:
    """What a report is made of: the runs, the frame, and every record that could not be read."""
    baseline: Run
    candidates: list[Run]
    frame: pd.DataFrame  # compare.compare(), or compare.summarize() when there is no candidate
    unreadable: list[tuple[str, RecordError]] = field(default_factory=list)
    # A one-run report's own integrity rows (unreadable records, an unfinished run): they gate it.
    integrity: pd.DataFrame | None = None
    change: str | None = None  # the change compared, where the caller knows it (upgrade-check's versions)

    @classmethod
    def build(cls, baseline: Run, candidates: list[Run]) -> Report:
        frame = compare.compare(baseline, candidates) if candidates else compare.summarize(baseline)
        unreadable = [(run.name, err) for run in [baseline, *candidates] for err in run.errors]
        integrity = None
        if not candidates:
            rows, gone = compare.integrity(baseline, "candidate")
            integrity = pd.DataFrame(rows + compare.missing_rows(baseline, gone), columns=compare.COLUMNS)
        return cls(baseline, candidates, frame, unreadable, integrity)

    @property
    def gate_frame(self) -> pd.DataFrame:
        """The rows the gate reads: the comparison, or a one-run report's integrity rows."""
        return self.frame if self.candidates else self.integrity

    def gate_fails(self, fail_on: tuple[str, ...]) -> bool:
        return compare.gate_fails(self.gate_frame, fail_on)

    @property
    def runs(self) -> list[Run]:
        return [self.baseline, *self.candidates]

    @property
    def title(self) -> str:
        if not self.candidates:
            return f"ftsuite run {self.baseline.name}"
        return f"ftsuite: {', '.join(c.name for c in self.candidates)} vs baseline {self.baseline.name}"

    def heading(self, fail_on: tuple[str, ...]) -> str:
        """The report's first line: with one candidate the answer (suite/report/answer.py), e.g. `peft 0.18.0 →
        0.21.2: not safe: 2 broken relations`; else the title, each candidate answering under it."""
        from suite.report import answer

        if len(self.candidates) != 1:
            return self.title
        cand = self.candidates[0]
        return answer.title(self.frame[self.frame["candidate_run"] == cand.name], self.baseline, cand, fail_on,
                            self.change)
