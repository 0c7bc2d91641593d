"""Checkpoint compatibility across the two version sets of an upgrade check: a row per checkpoint one
side saved and the other loaded (suite/tools/upgrade.py writes what happened)."""
from __future__ import annotations

from suite.report.verdicts import NEWLY_FAILING, WITHIN_NOISE, row

COMPAT_PREFIX = "checkpoints/"  # case ids of checkpoint-compatibility rows


def compare_checkpoints(doc: dict | None) -> list[dict]:
    """A row per checkpoint loaded across the two version sets. A baseline checkpoint the candidate
    cannot load, or loads to other outputs, is newly failing; the reverse direction (a downgrade)
    is informational."""
    rows = []
    for e in (doc or {}).get("entries") or []:
        if e.get("verdict") == "not applicable":  # listed in the table, not a row of the verdict frame
            continue
        forward = e.get("saved_in") == "baseline"
        diff = e.get("max_abs_logit_diff")
        if e.get("verdict", "").startswith("loads, same"):
            verdict, note = WITHIN_NOISE, ""
        elif forward:
            verdict = NEWLY_FAILING
            note = e.get("error") or f"outputs differ by {diff:.3g} (tolerance {e.get('tolerance')})"
        else:
            verdict = WITHIN_NOISE
            note = "informational (a downgrade): " + (e.get("error") or f"outputs differ by {diff:.3g}")
        route = e.get("route")  # per route since compat schema 2; one row per checkpoint before
        rows.append(row(f"{COMPAT_PREFIX}{e.get('case_id')}",
                        f"{route + ': ' if route else ''}loads in the {e.get('loaded_in')}", verdict, note,
                        unit="logit", better="lower", candidate=diff))
    return rows
