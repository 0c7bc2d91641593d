"""A case's outcome over its repeats, how an error reads, and why two cases cannot be compared
metric by metric (a changed fingerprint, a different schema, a skip)."""
from __future__ import annotations

from suite.matrix.spec import NOT_FINGERPRINTED
from suite.records.record import CaseRecord

FAILING = ("failed", "error")


def errored_note(bstat: str, breason: str, cstat: str, creason: str) -> str:
    """"errored in both: ..." / "errored on the candidate: ..." with the first line of the error."""
    first = lambda text: (text or "no message").strip().splitlines()[0][:300] if (text or "").strip() else "no message"
    if bstat.startswith("error") and cstat.startswith("error"):
        return f"errored in both: {first(creason)}" + ("" if first(breason) == first(creason)
                                                       else f" (baseline: {first(breason)})")
    side, reason = ("candidate", creason) if cstat.startswith("error") else ("baseline", breason)
    return f"errored on the {side}: {first(reason)}"


def outcome(records: list[CaseRecord]) -> tuple[str, str]:
    """The status of a case over its repeats (any failing repeat fails it) and the reason to show."""
    statuses = [r.status for r in records]
    for rec in records:
        if rec.status in FAILING:
            return rec.status, rec.reason or ""
    if all(s == "skipped" for s in statuses):
        return "skipped", records[0].reason or ""
    return "passed", ""


def case_diff(base: dict, cand: dict) -> str:
    """What differs between two resolved cases, e.g. `training.learning_rate 0.01 → 0.005`."""
    fb, fc = _flatten(base), _flatten(cand)
    parts = [f"{k} {fb.get(k, '(none)')} → {fc.get(k, '(none)')}" for k in sorted(set(fb) | set(fc))
             if k.split(".")[0] not in NOT_FINGERPRINTED and fb.get(k) != fc.get(k)]
    return ", ".join(parts) if parts else "the fingerprint differs"


def _flatten(doc: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def incomparable(brecs: list[CaseRecord], crecs: list[CaseRecord], bstat: str, cstat: str,
                 breason: str, creason: str) -> list[str]:
    """Why a pair of cases cannot be compared metric by metric (empty: it can). Records of two
    schema versions whose metrics mean the same compare (CaseRecord.metrics_schema)."""
    why = []
    if {r.metrics_schema for r in brecs} != {r.metrics_schema for r in crecs}:
        bv, cv = {r.schema_version for r in brecs}, {r.schema_version for r in crecs}
        why.append(f"schema_version {'/'.join(map(str, sorted(bv)))} vs {'/'.join(map(str, sorted(cv)))}")
    if {r.fingerprint for r in brecs} != {r.fingerprint for r in crecs}:
        why.append("case changed: " + case_diff(brecs[0].case, crecs[0].case))
    if bstat == cstat == "skipped" and breason == creason:
        why.append(f"skipped in both runs: {breason}")
    else:
        if bstat == "skipped":
            why.append(f"skipped in the baseline: {breason}")
        if cstat == "skipped":
            why.append(f"skipped in the candidate: {creason}")
    return why
