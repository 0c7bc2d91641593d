"""The comparison's vocabulary: the verdicts, the columns of a comparison frame and how a row is made.

Every module of the comparison (suite/report/compare.py and the modules it draws on) says its
verdicts in these words; the renderers and the gate read them."""
from __future__ import annotations

WORSE, BETTER, NEWLY_FAILING, FIXED = "worse", "better", "newly failing", "fixed"
# A case or an invariant test that raised (a crash, an exception in the harness) rather than failed a
# check: said apart from a failure, on the side(s) where it happened, and gated by default.
ERRORED = "errored"
NOT_COMPARABLE, WITHIN_NOISE = "not comparable", "within noise"
# A comparison that compared nothing (a side errored in every case, no case in common, records of
# schemas that cannot be compared, no case that ran on both sides and no relation measured on both,
# two sides of an upgrade-check that resolve to the same versions): one row about the whole run,
# gated by default. A green that compared nothing is as wrong as a red on a healthy stack.
NOTHING_COMPARED = "nothing compared"
# A relation broken on both sides: still broken, listed with the broken relations and gated by
# default. One the suite declares known broken upstream (Relation.known_broken) is shown with why, not
# gated while its discrepancy stays where it was measured, and broken in both when it moves.
BROKEN_IN_BOTH, KNOWN_BROKEN = "broken in both", "known broken"
# A timing measured once a side: shown with the change and its detection floor, never gated.
NEEDS_REPEATS = "needs repeats"
# What a run failed to keep: a case that passed in the baseline and has no readable record in the
# candidate (lost), a record that cannot be read on either side (unreadable), a candidate whose
# manifest says it did not finish or that has none (unfinished). A crashed nightly is never green.
LOST, UNREADABLE, UNFINISHED = "lost", "unreadable", "unfinished"
VERDICTS = (NOTHING_COMPARED, ERRORED, WORSE, NEWLY_FAILING, BROKEN_IN_BOTH, LOST, UNREADABLE, UNFINISHED,
            NOT_COMPARABLE, KNOWN_BROKEN, FIXED, BETTER, NEEDS_REPEATS, WITHIN_NOISE)  # most urgent first
STATUS = "status"  # the pseudo-metric of a case's outcome row
RECORD = "record"  # the pseudo-metric of an unreadable record's row
RUN = "(run)"  # the case id of a row about the whole run (an unfinished manifest)
COLUMNS = ["baseline_run", "candidate_run", "case_id", "metric", "unit", "better", "baseline", "candidate",
           "ratio", "change", "verdict", "noise", "threshold", "n_baseline", "n_candidate",
           "baseline_status", "candidate_status", "note"]


def row(case_id: str, metric: str, verdict: str, note: str = "", **fields: object) -> dict:
    """One row of a comparison frame: every column present, those not given None."""
    out = dict.fromkeys(COLUMNS)
    out.update(case_id=case_id, metric=metric, verdict=verdict, note=note, **fields)
    return out
