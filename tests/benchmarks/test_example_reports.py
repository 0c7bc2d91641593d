"""The committed example reports are what their committed inputs make today (benchmarks/example_reports.py)."""
from __future__ import annotations

import pytest

from benchmarks import example_reports

pytestmark = pytest.mark.slow  # renders three reports, one of 57 cases x 2 machines


def test_the_committed_examples_are_the_script_s_output():
    assert example_reports.differences() == [], "rerun python benchmarks/example_reports.py and review the diff"


def test_the_check_fails_when_a_committed_example_is_edited(tmp_path, monkeypatch):
    ex = example_reports.EXAMPLES[0]
    fake = tmp_path / "examples"
    (fake / ex.name).mkdir(parents=True)
    for name in example_reports.COMMITTED:
        text = (example_reports.EXAMPLES_DIR / ex.name / name).read_text()
        (fake / ex.name / name).write_text(text.replace("Gate: ", "Gate (edited by hand): ", 1))
    monkeypatch.setattr(example_reports, "EXAMPLES_DIR", fake)
    diff = example_reports.differences((ex,))
    assert diff and "report.md differs" in diff[0]
