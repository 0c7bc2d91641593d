"""What a run failed to keep: records that cannot be read, records its manifest lists that are not
on disk, a candidate that did not finish (or says nothing of it), and cases it planned and never wrote.
Each is a gated row; the case ids whose record is gone become `lost` rows where the baseline passed."""
from __future__ import annotations

import re
from pathlib import Path

from suite.errors import RecordError
from suite.records.runs import Run
from suite.report.verdicts import LOST, RECORD, RUN, STATUS, UNFINISHED, UNREADABLE, row


def slug_of(case_id: str) -> str:
    """A case id as its record's file name stem (suite/matrix/load.py's Case.slug)."""
    return case_id.replace("/", "__").replace(":", "-")


def _record_owner(run: Run, file: str, known: set[str]) -> str | None:
    """The case a record file belongs to: the manifest's listing, else its name (`<slug>[.N].json`)."""
    for case_id, names in run.listed.items():
        if file in names:
            return case_id
    stem = re.sub(r"(\.\d+)?\.json$", "", file)
    return next((c for c in sorted(known) if slug_of(c) == stem), None)


def integrity(run: Run, side: str, known: set[str] = frozenset()) -> tuple[list[dict], dict[str, str]]:
    """Rows for what a run failed to keep, and case id -> why its record is gone (for `lost`).

    Every unreadable record and every record the manifest lists that is not on disk is a row;
    a candidate with no readable manifest, or one whose manifest has no finished_at, is a row too."""
    gone: dict[str, str] = {}
    known = set(known) | set(run.by_case()) | set(run.listed) | set(run.planned or ())
    manifest_errors = [e for e in run.errors if Path(e.path).name == "manifest.json"]
    rows = _unreadable_rows(run, side, known, manifest_errors, gone)
    rows += _missing_record_rows(run, side, gone)
    if side == "candidate":
        rows += _unfinished_rows(run, manifest_errors)
    lost = (run.manifest or {}).get("lost")  # a merge of shards says why (suite/records/merge.py)
    lost = lost if isinstance(lost, dict) else {}
    for case_id in run.planned or ():
        if case_id not in gone and case_id not in run.by_case():
            gone[case_id] = str(lost.get(case_id) or "selected for the run, but no record was written "
                                                      "(did the run stop before it?)")
    return rows, gone


def _unreadable_rows(run: Run, side: str, known: set[str], manifest_errors: list[RecordError],
                     gone: dict[str, str]) -> list[dict]:
    """A row per record that cannot be read (the manifest aside); its case's record is gone."""
    rows = []
    for err in run.errors:
        if err in manifest_errors:
            continue
        file = Path(err.path).name
        owner = _record_owner(run, file, known)
        why = f"record {file} is unreadable: {err.message}"
        rows.append(row(owner or file, RECORD, UNREADABLE, f"{side}: {why}"))
        if owner:
            gone.setdefault(owner, why)
    return rows


def _missing_record_rows(run: Run, side: str, gone: dict[str, str]) -> list[dict]:
    """A row per record the manifest lists that is not on disk; its case's record is gone."""
    rows = []
    for case_id, names in run.listed.items():
        for name in names:
            if not (run.path / name).exists():
                why = f"record {name} is listed in manifest.json but missing"
                rows.append(row(case_id, RECORD, UNREADABLE, f"{side}: {why}"))
                gone.setdefault(case_id, why)
    return rows


def _unfinished_rows(run: Run, manifest_errors: list[RecordError]) -> list[dict]:
    """The candidate's manifest: unreadable, absent or without finished_at is a row (unfinished)."""
    if manifest_errors:
        return [row(RUN, "manifest", UNFINISHED, f"manifest.json is unreadable ({manifest_errors[0].message}): "
                                                 f"cannot tell whether the run finished")]
    if run.manifest is None:
        return [row(RUN, "manifest", UNFINISHED, "no manifest.json: cannot tell whether the run finished")]
    if not run.manifest.get("finished_at"):
        return [row(RUN, "manifest", UNFINISHED, f"manifest.json says the run did not finish (started "
                                                 f"{run.manifest.get('started_at') or '?'}; "
                                                 f"{sum(len(v) for v in run.listed.values())} records listed)")]
    return []


def missing_rows(run: Run, gone: dict[str, str]) -> list[dict]:
    """A one-run report's rows for cases its manifest planned that have no record: lost, gated."""
    have = run.by_case()
    return [row(case_id, STATUS, LOST, f"planned in manifest.json, no record: {why}")
            for case_id, why in sorted(gone.items()) if case_id not in have]
