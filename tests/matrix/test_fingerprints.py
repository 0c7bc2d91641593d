"""Every case's fingerprint and markers stay what they were: golden curves, references and history
series are keyed by fingerprint, so a refactor of the case type must recompute every one the same."""
from __future__ import annotations

import json

from suite.cases import load_cases
from suite.paths import TESTS

GOLDEN = TESTS / "golden" / "case_fingerprints.json"


def drift(recorded: dict, mode: str) -> list[str]:
    """Cases whose fingerprint or markers differ from the recorded ones, or that appeared or vanished."""
    got = {c.id: c for c in load_cases(mode=mode)}
    want = recorded[mode]
    out = [f"{i}: new case, not recorded" for i in sorted(set(got) - set(want))]
    out += [f"{i}: recorded, no longer declared" for i in sorted(set(want) - set(got))]
    for i in sorted(set(got) & set(want)):
        fp = want[i]["fingerprint"] if isinstance(want[i], dict) else want[i]
        if got[i].fingerprint != fp:
            out.append(f"{i}: fingerprint {got[i].fingerprint}, recorded {fp}")
        if isinstance(want[i], dict) and list(got[i].markers) != want[i]["markers"]:
            out.append(f"{i}: markers {list(got[i].markers)}, recorded {want[i]['markers']}")
    return out


def test_every_fingerprint_and_marker_is_what_was_recorded():
    recorded = json.loads(GOLDEN.read_text())
    assert drift(recorded, "regression") == []
    assert drift(recorded, "benchmark") == []


def test_a_changed_fingerprint_is_found():
    recorded = json.loads(GOLDEN.read_text())
    case_id = "tiny-llama/qlora/base"
    recorded["regression"][case_id]["fingerprint"] = "0" * 16
    recorded["regression"][case_id]["markers"] = ["case"]
    found = drift(recorded, "regression")
    assert any(f.startswith(f"{case_id}: fingerprint") for f in found)
    assert any(f.startswith(f"{case_id}: markers") for f in found)
