"""A comparison that compared nothing is never green: each way of comparing nothing, crafted, fails the
default gate with its own verdict (suite/report/coverage.py), and a comparison says how much it compared."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite.records import runs
from suite.report import compare
from suite.report import markdown as report_md
from suite.report import model as report_model
from tests.fixtures.make_runs import ENV, invariants, record

DEFAULT = compare.parse_fail_on(compare.DEFAULT_FAIL_ON)
ERROR = {"kind": "exception", "message": "AttributeError: 'NoneType' object has no attribute 'apply'",
         "exitcode": 1, "stderr_tail": ""}


def make(tmp_path: Path, name: str, records: list[dict], inv: dict | None = None) -> runs.Run:
    out = tmp_path / name
    out.mkdir()
    for i, rec in enumerate(records):
        (out / f"r{i}.json").write_text(json.dumps(rec))
    manifest = {"schema_version": 1, "kind": "ftsuite.run", "run_id": name, "mode": "regression",
                "started_at": "2026-01-01T00:00:00+0000", "finished_at": "2026-01-01T00:01:00+0000",
                "argv": ["x"], "environment": ENV, "counts": {}, "records": {}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    if inv is not None:
        (out / "invariants").mkdir()
        (out / "invariants" / "invariants.json").write_text(json.dumps(inv))
    return runs.load(out)


def errored(run: str, case_id: str) -> dict:
    return record(run, case_id, status="error", reason=f"exception: {ERROR['message']}", failure=ERROR)


def nothing(df) -> list[str]:
    return list(df[df.verdict == compare.NOTHING_COMPARED]["note"])


def test_a_baseline_that_errored_in_every_case_fails_the_gate_instead_of_reading_fixed(tmp_path):
    # the committed trl 1.15.0 -> 1.16.0 example of 2026-11-23: "Gate: passes · 24 fixed"
    base = make(tmp_path, "b", [errored("b", "t/a"), errored("b", "t/b"),
                                record("b", "t/gpu", status="skipped", reason="needs a CUDA GPU")])
    cand = make(tmp_path, "c", [record("c", "t/a"), record("c", "t/b"),
                                record("c", "t/gpu", status="skipped", reason="needs a CUDA GPU")])
    df = compare.compare_runs(base, cand)
    assert set(df[df.case_id.isin(["t/a", "t/b"]) & (df.metric == compare.STATUS)].verdict) == {compare.FIXED}
    [note] = nothing(df)
    assert note.startswith("the baseline errored in every case it ran (2 of 2; 1 skipped)")
    assert "'NoneType' object has no attribute 'apply'" in note
    assert compare.gate_fails(df, DEFAULT)
    assert compare.coverage(df).compared == 0


def test_a_candidate_of_an_unreadable_older_schema_fails_the_gate(tmp_path):
    base = make(tmp_path, "b", [record("b", "t/a"), record("b", "t/b")])
    cand = make(tmp_path, "c", [record("c", "t/a", schema_version=0), record("c", "t/b", schema_version=0)])
    df = compare.compare_runs(base, cand)
    [note] = nothing(df)
    assert note.startswith("records cannot be compared: every one of the 2 common cases has records of "
                           "schema_version 1 in the baseline and 0 in the candidate")
    assert compare.gate_fails(df, DEFAULT)


def test_two_runs_with_no_case_in_common_fail_the_gate(tmp_path):
    df = compare.compare_runs(make(tmp_path, "b", [record("b", "t/a")]), make(tmp_path, "c", [record("c", "t/z")]))
    assert nothing(df) == ["no case in common: the baseline has 1 cases, the candidate 1 others (a different "
                           "selection, or a renamed matrix?)"]
    assert compare.gate_fails(df, DEFAULT)


def test_cases_that_ran_on_one_side_only_compare_nothing(tmp_path):
    base = make(tmp_path, "b", [record("b", "t/a", status="skipped", reason="needs a CUDA GPU")])
    cand = make(tmp_path, "c", [record("c", "t/a")])
    df = compare.compare_runs(base, cand)
    [note] = nothing(df)
    assert note.startswith("no case ran on both sides (1 cases")
    assert compare.gate_fails(df, DEFAULT)


def test_relations_measured_on_both_sides_are_something_compared(tmp_path):
    base = make(tmp_path, "b", [record("b", "t/a", status="skipped", reason="x")], invariants(0))
    cand = make(tmp_path, "c", [record("c", "t/a", status="skipped", reason="x")], invariants(0))
    df = compare.compare_runs(base, cand)
    assert nothing(df) == []
    cov = compare.coverage(df)
    assert (cov.cases, cov.compared, cov.relations, cov.relations_compared) == (1, 0, 3, 3)


def test_a_healthy_comparison_says_how_much_it_compared_and_passes(tmp_path):
    base = make(tmp_path, "b", [record("b", "t/a"), record("b", "t/b"),
                                record("b", "t/gpu", status="skipped", reason="needs a CUDA GPU")])
    cand = make(tmp_path, "c", [record("c", "t/a"), record("c", "t/b"),
                                record("c", "t/gpu", status="skipped", reason="needs a CUDA GPU")])
    rep = report_model.Report.build(base, [cand])
    assert not rep.gate_fails(DEFAULT)
    text = report_md.markdown(rep, DEFAULT)
    assert "Compared: 2 of 3 cases ran on both sides." in text


@pytest.mark.parametrize("fail_on", ["nothing-compared", "worse"])
def test_nothing_compared_can_be_chosen_alone_and_is_on_by_default(tmp_path, fail_on):
    df = compare.compare_runs(make(tmp_path, "b", [record("b", "t/a")]), make(tmp_path, "c", [record("c", "t/z")]))
    assert compare.gate_fails(df, compare.parse_fail_on(fail_on)) == (fail_on == "nothing-compared")
    assert "nothing-compared" in compare.DEFAULT_FAIL_ON


def test_report_of_a_schema_0_candidate_exits_1_naming_it(tmp_path, capsys):
    from suite import cli

    make(tmp_path, "b", [record("b", "t/a"), record("b", "t/b")])
    make(tmp_path, "c", [record("c", "t/a", schema_version=0), record("c", "t/b", schema_version=0)])
    assert cli.main(["report", str(tmp_path / "b"), str(tmp_path / "c")]) == 1
    out, err = capsys.readouterr()
    assert "nothing compared" in err and "records cannot be compared" in out
