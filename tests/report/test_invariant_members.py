"""An invariant test that raises in one member of its parametrized set (one method, one loss type) is that
member's failure of the relation its siblings measure, carrying what it raised; the siblings are still
measured. Until 2026-12-07 the raise was an `errored` test beside a relation that read "holds" from the
members that did measure (suite/invariants/members.py, tests/invariants/conftest.py,
suite/report/invariants.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suite.invariants.members import family, raised_members
from suite.paths import ROOT
from suite.report.invariants import compare_invariants
from suite.report.verdicts import ERRORED, NEWLY_FAILING

PEFT = "ValueError: The version of PEFT you are using is not compatible, please use a version >= 0.22.0"
T = "tests/invariants/test_x.py::test_member"


def test_a_raising_member_fails_the_relations_its_siblings_measured():
    measured = [(f"{T}[a]", "logged_loss", 0.0, False), (f"{T}[c]", "logged_loss", 1e-7, False),
                ("tests/invariants/test_x.py::test_can_fail", "grad_accum.loss", 0.3, True),
                ("tests/invariants/test_y.py::test_alone", "packing.run_loss", 0.0, False)]
    errors = {f"{T}[b]": PEFT, "tests/invariants/test_z.py::test_single": "KeyError: 'x'",
              "tests/invariants/test_x.py::test_can_fail[other]": "OSError: gone"}
    assert family(f"{T}[b]") == T
    # the single test measured nothing anyone knows of, and a deliberate break's relation is not held: neither
    assert raised_members(measured, errors) == {"logged_loss": {f"{T}[b]": PEFT}}


def _doc(tests: dict[str, str], errors: dict[str, str], measured: float, holds: bool, raised: dict | None) -> dict:
    relation = {"statement": "the logged loss is the hand-computed one", "tolerance": 1e-5, "at_least": False,
                "unit": "nats", "measured": measured, "holds": holds, **({"raised": raised} if raised else {})}
    return {"kind": "ftsuite.invariants", "schema_version": 1, "relations": {"logged_loss": relation},
            "tests": tests, "skips": {}, "errors": errors, "measured_by": {"logged_loss": [f"{T}[a]", f"{T}[c]"]}}


BASE = _doc({f"{T}[{m}]": "passed" for m in "abc"}, {}, 0.0, True, None)


def test_the_comparison_reads_a_raising_member_as_the_relation_newly_failing_with_the_exception():
    today = _doc({f"{T}[a]": "passed", f"{T}[b]": "errored", f"{T}[c]": "passed"}, {f"{T}[b]": PEFT}, 0.0, True, None)
    rows = {r["case_id"]: r for r in compare_invariants(BASE, today)}  # how it read until 2026-12-07
    assert rows["invariants/logged_loss"]["verdict"] != NEWLY_FAILING and rows["invariants/test_member[b]"][
        "verdict"] == ERRORED
    now = _doc({f"{T}[a]": "passed", f"{T}[b]": "failed", f"{T}[c]": "passed"}, {f"{T}[b]": PEFT}, 0.0, False,
               {f"{T}[b]": PEFT})
    rows = {r["case_id"]: r for r in compare_invariants(BASE, now)}
    relation = rows["invariants/logged_loss"]
    assert relation["verdict"] == NEWLY_FAILING and relation["candidate"] == 0.0
    assert relation["note"] == (f"holds → broken: a member raised: test_member[b]: {PEFT}; the other members "
                                f"measured 0 (≤ 1e-05)")
    member = rows["invariants/test_member[b]"]
    assert member["verdict"] == NEWLY_FAILING and member["note"].endswith(f": raised {PEFT}")


MEMBERS = '''
import os
import pytest
from suite.invariants.relations import RELATIONS


@pytest.mark.parametrize("member", ["a", "b", "c"])
def test_member(member, invariant):
    if member == "b" and os.environ.get("RAISE_B"):
        raise ValueError("The version of PEFT you are using is not compatible, please use a version >= 0.22.0")
    invariant.holds(RELATIONS["logged_loss"].measure(0.0))
'''


def _run_members(tmp: Path, raise_b: bool) -> dict:
    """pytest on a parametrized invariant test under the real invariant conftest; its FTSUITE_INVARIANTS_JSON."""
    tmp.mkdir()
    shutil.copy(ROOT / "tests" / "invariants" / "conftest.py", tmp / "conftest.py")
    (tmp / "test_x.py").write_text(MEMBERS)
    (tmp / "pytest.ini").write_text("[pytest]\n")
    out = tmp / "invariants.json"
    env = {**__import__("os").environ, "FTSUITE_INVARIANTS_JSON": str(out), "PYTHONPATH": str(ROOT),
           **({"RAISE_B": "1"} if raise_b else {})}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-c", str(tmp / "pytest.ini"), "--rootdir", str(tmp), str(tmp)],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert out.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_the_invariant_conftest_records_a_raising_member_as_a_failing_member(tmp_path):
    base, cand = _run_members(tmp_path / "base", False), _run_members(tmp_path / "cand", True)
    node = "test_x.py::test_member[b]"
    relation = cand["relations"]["logged_loss"]
    assert relation["holds"] is False and relation["measured"] == 0.0 and relation["raised"] == {node: PEFT}
    assert cand["tests"] == {"test_x.py::test_member[a]": "passed", node: "failed",
                             "test_x.py::test_member[c]": "passed"}
    assert base["relations"]["logged_loss"]["holds"] is True and "raised" not in base["relations"]["logged_loss"]
    rows = {r["case_id"]: r for r in compare_invariants(base, cand)}
    assert rows["invariants/logged_loss"]["verdict"] == NEWLY_FAILING and PEFT in rows["invariants/logged_loss"]["note"]
    assert not any(r["verdict"] == ERRORED for r in rows.values())
