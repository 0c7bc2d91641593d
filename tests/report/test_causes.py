"""What named a failure (suite/report/causes.py): every failing or worse case lists the checks and relations
that failed, by name; a case whose only failure is its golden curve, or that is worse with every check
passing, says that no check names a cause, and the reports count such cases in their first lines.

The crafted pair causes-base / causes-cand (tests/fixtures/make_runs.py) holds one case per way."""
from __future__ import annotations

import dataclasses

import pytest

from suite.judge.baselines import CHECK_NAME, curve_moved
from suite.paths import TESTS
from suite.records import runs
from suite.report import causes, compare
from suite.report import html as report_html
from suite.report import markdown as report_md
from suite.report import model as report_model

FIXTURES = TESTS / "fixtures" / "runs"


@pytest.fixture(scope="module")
def pair() -> report_model.Report:
    return report_model.Report.build(runs.load(FIXTURES / "causes-base"), [runs.load(FIXTURES / "causes-cand")])


@pytest.fixture(scope="module")
def one_run() -> report_model.Report:
    return report_model.Report.build(runs.load(FIXTURES / "causes-cand"), [])


def by_case(found: list[causes.Cause]) -> dict[str, causes.Cause]:
    return {c.case_id.removeprefix("causes/"): c for c in found}


def test_each_failing_case_is_named_by_its_failed_checks(pair):
    found = by_case(causes.of_comparison(pair.frame, pair.candidates[0]))
    assert set(found) == {"relation-named", "curve-only", "worse-only", "no-reference", "errored", "raised"}
    rel = found["relation-named"]
    assert [n.check for n in rel.named] == ["grpo.advantages_by_definition"]  # the golden curve is not a cause
    assert rel.named[0].message.startswith("advantages differ from the rewards scaled")  # its case id left out
    assert "\n" not in rel.named[0].message and rel.curve_moved and not rel.unnamed
    assert rel.label == "failed; worse: final_loss"
    assert [n.check for n in found["raised"].named] == ["reload/load_adapter"]
    assert found["errored"].error == "exception: OSError: saved tokenizer does not reload"
    # a golden-curve failure that is not a moved curve (no reference yet) names its own cause
    assert [n.check for n in found["no-reference"].named] == [CHECK_NAME] and not found["no-reference"].unnamed


def test_a_moved_curve_or_a_worse_metric_alone_names_no_cause(pair):
    found = by_case(causes.of_comparison(pair.frame, pair.candidates[0]))
    assert found["curve-only"].unnamed and found["curve-only"].unnamed_text == causes.CURVE_MOVED
    assert found["worse-only"].unnamed and found["worse-only"].unnamed_text == causes.NO_CAUSE
    assert found["worse-only"].label == "worse: final_loss"
    assert causes.unnamed_count(list(found.values())) == 2


def test_a_failed_relation_beside_the_curve_makes_the_case_named():
    """The can-fail pair: the same record with its relation passing reads as unnamed, failing as named."""
    rec = runs.load(FIXTURES / "causes-cand").by_case()["causes/relation-named"][0]
    relation = next(c for c in rec.checks if c["name"] == "grpo.advantages_by_definition")
    passing = dataclasses.replace(rec, checks=[{**c, "passed": True} if c is relation else c for c in rec.checks])
    assert causes.of_records(rec.case_id, [passing]).unnamed
    assert not causes.of_records(rec.case_id, [rec]).unnamed


def test_curve_moved_only_for_a_measured_mismatch():
    assert curve_moved({"name": CHECK_NAME, "passed": False, "value": 0.2})
    assert not curve_moved({"name": CHECK_NAME, "passed": True, "value": 0.001})
    assert not curve_moved({"name": CHECK_NAME, "passed": False, "value": None})  # no reference: its own cause
    assert not curve_moved({"name": "loss_decreases", "passed": False, "value": 0.2})


def test_first_line_drops_the_case_id_and_cuts_long_lines():
    assert causes.first_line("c/x: first\n  second", "c/x") == "first"
    assert causes.first_line("\n\n") == "no message"
    assert len(causes.first_line("y" * 500)) == causes.WIDTH


def test_the_comparison_names_causes_in_its_title_and_its_own_section(pair):
    text = report_md.markdown(pair)
    first = text.splitlines()[0]
    assert first.endswith("3 cases worse; 2 cases with no check naming a cause"), first
    assert "- `causes/curve-only` (failed; worse: final_loss): **the loss curve moved; no check names a cause**" in text
    assert "- `causes/worse-only` (worse: final_loss): **no check names a cause**" in text
    assert "`grpo.advantages_by_definition`: advantages differ" in text
    gates = tuple(compare.GATES.values())
    assert pair.heading(gates) == first.removeprefix("## ")  # the HTML's title and h1 (its pictures take seconds)
    page = report_html.candidate_html(pair, pair.candidates[0], gates)
    assert '<li class=unnamed><code class="id" title="causes/curve-only">' in page
    assert causes.CURVE_MOVED in page


def test_the_one_run_report_counts_failures_no_check_names(one_run):
    text = report_md.markdown(one_run)
    assert "2 passed · 4 failed (1 with no check naming a cause) · 1 error" in text.splitlines()[2]
    assert "- `causes/curve-only` (failed): **the loss curve moved; no check names a cause**" in text
    assert "worse-only" not in text.split("### What named each failure")[1]  # passed, and no baseline to be worse than
    page = report_html.summary_html(one_run)
    assert '<p class="counts">2 passed · 4 failed (1 with no check naming a cause) · 1 error</p>' in page
    assert "<h3>What named each failure</h3>" in page


def test_a_run_where_every_failure_is_named_has_no_count():
    """Without the moved-curve case the headline has no count: the count is the data's, not a fixed line."""
    run = runs.load(FIXTURES / "causes-cand")
    named = [c for c in causes.of_run(run) if not c.unnamed]
    assert causes.headline_suffix(named) == "" and causes.headline_suffix(causes.of_run(run)).startswith("; 1 case ")


@pytest.mark.slow  # renders the HTML report with its pictures (seconds)
def test_upgrade_check_names_the_cases_no_check_names_a_cause(tmp_path, monkeypatch):
    """upgrade-check over the causes pair (each side's run stands in for a made environment): its report's
    title counts them, its upgrade-check.json lists them."""
    import json
    import shutil

    from suite.tools import upgrade

    sides = {"1.16.0": "causes-base", "1.17.0": "causes-cand"}

    def fake_prepare(spec):
        version = spec.pins[0].split("==")[1]
        return tmp_path / "env" / version, {"cached": True, "versions": {"trl": version}}, 0.0

    def fake_run_cases(env_dir, run_id, results_dir, select, checks=upgrade.Checks(), **_):
        shutil.copytree(FIXTURES / sides[env_dir.name], results_dir / run_id, dirs_exist_ok=True)
        return upgrade.Timed(results_dir / run_id, 1.0, 0.0, 0)

    monkeypatch.setattr(upgrade, "prepare", fake_prepare)
    monkeypatch.setattr(upgrade, "run_cases", fake_run_cases)
    code, summary = upgrade.upgrade_check("trl==1.16.0", "trl==1.17.0", ["-m", "tiny"], tmp_path / "out",
                                          tmp_path / "results", ("worse", "newly failing"), "t",
                                          upgrade.Checks(invariants=False, compat=False))
    assert code == 1
    assert summary["no_check_names_a_cause"] == ["causes/curve-only", "causes/worse-only"]
    assert json.loads((tmp_path / "out" / "upgrade-check.json").read_text())["no_check_names_a_cause"] == [
        "causes/curve-only", "causes/worse-only"]
    first = (tmp_path / "out" / "report.md").read_text().splitlines()[0]
    assert first.startswith("## trl 1.16.0 → 1.17.0: not safe: ") and first.endswith(
        "; 2 cases with no check naming a cause"), first
    assert "the loss curve moved; no check names a cause" in (tmp_path / "out" / "report.html").read_text()
