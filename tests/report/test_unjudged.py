"""The checks that could not judge a case (suite/report/unjudged.py): recorded as `judged: false`, neither a
failure nor a pass, counted apart in both reports' first lines, per check with the reason most cases gave."""
from __future__ import annotations

import dataclasses

import pytest

from suite.checkresult import CheckResult, not_judged
from suite.paths import TESTS
from suite.records import runs
from suite.errors import RecordError
from suite.records.record import CaseRecord
from suite.report import html as report_html
from suite.report import markdown as report_md
from suite.report import model as report_model
from suite.report import unjudged

RUN = TESTS / "fixtures" / "runs" / "causes-cand"


def with_checks(run: runs.Run, extra: list[dict]) -> runs.Run:
    """The run with `extra` checks added to every passed record."""
    recs = [dataclasses.replace(r, checks=[*r.checks, *extra]) if r.status == "passed" else r for r in run.records]
    return dataclasses.replace(run, records=recs)


def test_a_not_judged_check_is_recorded_apart_and_reads_back():
    res = not_judged("grad_clipping", "tiny/x", "no clipping configured (max_grad_norm 0)")
    doc = res.to_dict()
    assert doc["passed"] and doc["judged"] is False and doc["message"] == "tiny/x: not judged: no clipping configured (max_grad_norm 0)"
    assert "judged" not in CheckResult("a", True, "held").to_dict()  # a judged check keeps the record's old shape
    assert unjudged.reason(doc["message"]) == "no clipping configured (max_grad_norm 0)"


def test_a_malformed_judged_field_names_the_file_and_field(tmp_path):
    run = runs.load(RUN)
    rec = next(r for r in run.records if r.status == "passed")
    doc = rec.to_dict()
    doc["checks"] = [{"name": "grad_clipping", "passed": True, "message": "m", "judged": "no"}]
    with pytest.raises(RecordError, match=r"checks\[0\]\.judged"):
        CaseRecord.from_dict(doc, where=str(tmp_path / "rec.json"))


def test_the_reports_count_checks_not_judged_per_check():
    run = runs.load(RUN)
    passed = {r.case_id for r in run.records if r.status == "passed"}
    assert passed, "the fixture run has passed cases"
    extra = [not_judged("padding_invariance", "c", "no bound measured for bfloat16 logits on cpu").to_dict(),
             not_judged("grad_clipping", "c", "no clipping configured").to_dict()]
    found = unjudged.of_run(with_checks(run, extra))
    assert [(u.check, u.cases, u.reason) for u in found] == [
        ("grad_clipping", len(passed), "no clipping configured"),
        ("padding_invariance", len(passed), "no bound measured for bfloat16 logits on cpu")]
    report = report_model.Report.build(with_checks(run, extra), [])
    line = f"grad_clipping in {len(passed)} case"
    assert "Not judged (neither passed nor failed): " in report_md.markdown(report) and line in report_md.markdown(report)
    assert line in report_html.render(report)


def test_checks_that_judged_make_no_line():
    """The can-fail counterpart: the same checks with judged left true add nothing to either report."""
    run = runs.load(RUN)
    extra = [CheckResult("grad_clipping", True, "c: held").to_dict()]
    assert unjudged.of_run(with_checks(run, extra)) == []
    assert "Not judged" not in report_md.markdown(report_model.Report.build(with_checks(run, extra), []))


def test_a_comparison_says_what_the_candidate_did_not_judge():
    base, cand = runs.load(TESTS / "fixtures" / "runs" / "causes-base"), runs.load(RUN)
    extra = [not_judged("optimizer_update", "c", "AdamW8bit is not torch's plain AdamW").to_dict()]
    text = report_md.markdown(report_model.Report.build(base, [with_checks(cand, extra)]))
    assert "optimizer_update in" in text and "AdamW8bit is not torch" in text
