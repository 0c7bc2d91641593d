"""One failure shared by several cases is one finding in the reports (suite/report/findings.py), in the
one-run report and the comparison, Markdown and HTML. Until 2026-12-07 the canary's 46 cases that failed
one load route with the same ValueError read as 46 unrelated lines; now they read as one line, '3 cases:
route `load_adapter` raised ValueError: ...' here, the case ids after it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from suite.paths import TESTS
from suite.records import runs
from suite.report import compare, findings
from suite.report import html as report_html
from suite.report import markdown as report_md
from suite.report import model as report_model

FIXTURES = TESTS / "fixtures" / "runs"
PEFT = "ValueError: The version of PEFT you are using is not compatible, please use a version >= 0.22.0"
ADAPTERS = ("tiny-llama__lora__base", "tiny-llama__qlora__base", "tiny-mistral__lora__base")


def _fail(path: Path, name: str, message: str, raised: str | None) -> None:
    """A fixture record turned into a failed one, failing check `name` (raising `raised`)."""
    doc = json.loads(path.read_text())
    check = {"name": name, "passed": False, "message": f"{doc['case_id']}: {message}", "value": None, "bound": None,
             **({"raised": raised} if raised else {})}
    doc.update(status="failed", reason=check["message"], checks=[*doc["checks"], check])
    path.write_text(json.dumps(doc))


@pytest.fixture
def two_runs(tmp_path) -> tuple[runs.Run, runs.Run]:
    """tiny-a as it is, and a copy whose three adapter cases failed load_adapter with transformers' PEFT error
    (each saying its own checkpoint path) and whose full fine-tune failed its loss check by its own numbers."""
    base, cand = tmp_path / "base", tmp_path / "cand"
    shutil.copytree(FIXTURES / "tiny-a", base)
    shutil.copytree(FIXTURES / "tiny-a", cand)
    for i, slug in enumerate(ADAPTERS):
        _fail(cand / f"{slug}.json", "reload/load_adapter", f"base.load_adapter(dir) failed: {PEFT}", PEFT)
    _fail(cand / "tiny-llama__full__base.json", "loss_decreases",
          "loss did not decrease enough: mean of the last 3 logged losses 2.31 >= 2.29", None)
    return runs.load(base), runs.load(cand)


def test_identical_failures_are_one_finding_and_a_single_one_is_not(two_runs):
    base, cand = two_runs
    found = findings.findings(cand)
    assert len(found) == 1, found
    f = found[0]
    assert f.cases == ("tiny-llama/lora/base", "tiny-llama/qlora/base", "tiny-mistral/lora/base") and f.raised
    assert f.headline == f"3 cases: route `load_adapter` raised {PEFT}"
    assert findings.findings(cand, base)[0].in_baseline == 0 and findings.findings(base) == []


def test_messages_that_differ_by_case_paths_and_numbers_group(two_runs):
    assert findings.normalise("c/x: OSError: /tmp/r/c__x/checkpoint/adapter_config.json: 12 bytes at 0x7f3a",
                              "c/x") == findings.normalise("OSError: /tmp/r/d__y/checkpoint/adapter_config.json: "
                                                           "40 bytes at 0x1b2c", "d/y")
    assert findings.normalise(PEFT) == PEFT  # a version is what the finding is about: kept
    assert findings.normalise("loss 2.31 >= 2.29 at step 15.") == "loss # >= # at step #."


LINE = f"- **3 cases: route `load_adapter` raised {PEFT.replace('>', '&gt;')}** (`tiny-llama/lora/base`, "
SECTION = "Findings: one failure shared by several cases"


def test_the_one_run_report_shows_the_finding_in_markdown_and_html(two_runs):
    base, cand = two_runs
    report = report_model.Report.build(cand, [])
    text = report_md.markdown(report)
    assert f"### {SECTION}" in text and LINE in text, text
    page = report_html.summary_html(report)  # the page less its pictures, which take seconds
    assert f"<h3>{SECTION}</h3>" in page and "route `load_adapter`" in page
    assert SECTION not in report_md.markdown(report_model.Report.build(base, []))


def test_the_comparison_shows_the_finding_and_whether_the_baseline_failed_so(two_runs):
    base, cand = two_runs
    report = report_model.Report.build(base, [cand])
    text = report_md.markdown(report)
    assert f"### {SECTION}" in text and LINE in text and "none of them failed so in the baseline" in text, text
    page = report_html.candidate_html(report, cand, tuple(compare.GATES.values()))
    assert f"<h3>{SECTION}</h3>" in page and "failed so in the baseline" in page
