"""Renderers and the report command: golden Markdown, escaped self-contained HTML, the gate.

Golden files are tests/golden/*.md. A missing one is written and the test fails; after an
intended change, rewrite them with FTSUITE_UPDATE_GOLDEN=1 python -m pytest tests/report/test_report.py
and review the diff.
"""
from __future__ import annotations

import json
import os
import re

import pandas as pd
import pytest

from suite.paths import TESTS
from suite.records import runs
from suite.report import compare
from suite.report import files as report_files
from suite.report import markdown as report_md
from suite.report import model as report_model

FIXTURES = TESTS / "fixtures" / "runs"
GOLDEN = TESTS / "golden"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("FTSUITE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        pytest.fail(f"golden file {path} was missing: written now; review it and commit it")
    assert text == path.read_text(), (f"{name} differs from the golden file; if the change is intended, "
                                      f"rerun with FTSUITE_UPDATE_GOLDEN=1 and review the diff")


def build(*names: str) -> report_model.Report:
    loaded = [runs.load(FIXTURES / n) for n in names]
    return report_model.Report.build(loaded[0], loaded[1:])


@pytest.mark.parametrize("golden, names", [
    ("verdicts.md", ("verdicts-base", "verdicts-cand")),
    ("tiny.md", ("tiny-a", "tiny-b")),
    ("tiny-one-run.md", ("tiny-a",)),
    ("causes.md", ("causes-base", "causes-cand")),
    ("causes-one-run.md", ("causes-cand",)),
])
def test_markdown_matches_golden(golden, names):
    assert_golden(golden, report_md.markdown(build(*names)))


@pytest.fixture(scope="module")
def html_page() -> str:
    return report_html_of("verdicts-base", "verdicts-cand")


def report_html_of(*names: str) -> str:
    from suite.report import html as report_html

    return report_html.render(build(*names))


@pytest.mark.slow
def test_html_escapes_case_ids_and_failure_text(html_page):
    assert "<script" not in html_page and "<img src=x" not in html_page and "onerror=alert(1)>" not in html_page
    assert "crafted/&lt;img src=x onerror=alert(1)&gt;&amp;&quot;quoted&quot;" in html_page
    # the failure message, as text (a line may break after its slash: <wbr>, which is markup of ours)
    assert "&lt;b&gt;2.9&lt;/<wbr>b&gt;" in html_page
    assert "corrupt.json" in html_page and "newer-schema.json" in html_page and "truncated.json" in html_page


@pytest.mark.slow
def test_html_is_self_contained(html_page):
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html_page) + re.findall(r"url\(([^)]*)\)", html_page)
    assert urls and all(u.startswith("data:") for u in urls), [u[:40] for u in urls if not u.startswith("data:")]
    assert not re.search(r"https?://", html_page)
    assert html_page.count("data:image/png;base64,") >= 4  # loss curves and bars


def test_html_sections(html_page):
    for text in ("Environment", "trl", "1.17.0", "Verdicts", "What changed", "Loss curves",
                 "Memory, throughput, checkpoint size"):
        assert text in html_page
    assert html_page.index("Environment") < html_page.index("Verdicts") < html_page.index("Loss curves")


def test_markdown_escapes_table_breaking_text():
    text = report_md.markdown(build("verdicts-base", "verdicts-cand"))
    row = next(line for line in text.splitlines() if "crafted/newly-failing" in line and "status" in line)
    assert row.count(" | ") == 7  # pipes in the failure message do not add columns
    assert "<script>" not in text and "&lt;script&gt;" in text


@pytest.mark.slow
def test_write_produces_every_format(tmp_path):
    paths = report_files.write(build("verdicts-base", "verdicts-cand"), tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["comparison.csv", "comparison.json", "report.html", "report.md"]
    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == compare.COLUMNS
    rows = json.loads(paths["json"].read_text())
    # every verdict but `nothing compared`, which is about a whole comparison (tests/report/test_coverage.py)
    assert len(rows) == len(csv) and {r["verdict"] for r in rows} == set(compare.VERDICTS) - {compare.NOTHING_COMPARED}


def test_the_one_run_summary_says_what_a_trainer_whose_loss_says_little_learned():
    """A GRPO case's loss is a surrogate near 0: the summary's learned column shows the reward it raised, a DPO
    or reward-model case its pair accuracy, a KTO case its reward margin, and an SFT case nothing."""
    import pandas as pd

    from suite.report.format import SUMMARY_HEADERS, summary_cells

    rows = [("grpo", "final_loss", -0.0056, "nats"), ("grpo", "online_reward_final", 0.864, "reward"),
            ("dpo", "reward_accuracy_final", 1.0, "fraction"), ("kto", "kto_reward_margin_final", 3.93071, "nats"),
            ("rm", "pairwise_accuracy_final", 0.825, "fraction"), ("sft", "final_loss", 0.44, "nats")]
    values = pd.DataFrame(rows, columns=["case_id", "metric", "value", "unit"]).set_index(["case_id", "metric"])
    assert SUMMARY_HEADERS[-1] == "learned"
    learned = {case: summary_cells(values, case)[-1] for case in ("grpo", "dpo", "kto", "rm", "sft")}
    assert learned == {"grpo": "reward 0.864", "dpo": "pair accuracy 1.00", "kto": "reward margin 3.9307",
                       "rm": "pair accuracy 0.825", "sft": "-"}
    assert summary_cells(values, "grpo")[0] == "-0.0056"
