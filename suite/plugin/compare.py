"""`pytest --compare-to RUN`: compare this session's run with RUN and print the Markdown summary.

The report is written in pytest_sessionfinish (after the run's manifest is finished) and shown
in the terminal summary. It informs; the gate is `python -m suite report`, which exits non-zero.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from suite import options
from suite.errors import SuiteError
from suite.paths import ROOT
from suite.plugin.state import PluginSession
from suite.report import files as report_files
from suite.report import markdown as report_md
from suite.report import model as report_model


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftsuite")
    group.addoption("--compare-to", metavar="RUN", default=None,
                    help="at the end, compare this run with RUN (a run id under the results folder, or "
                         "a path), write the report and print its Markdown summary")
    group.addoption("--report-dir", metavar="DIR", default=None,
                    help="where --compare-to writes its report (default: reports/<run-id>-vs-<RUN>)")


def pytest_configure(config: pytest.Config) -> None:
    """--report-dir names a folder: refused now, not after the whole run when the report is written."""
    try:
        options.check_out_dir(config.getoption("report_dir"), "--report-dir")
    except SuiteError as exc:
        raise pytest.UsageError(str(exc)) from None


def render(plugin: PluginSession) -> str:
    """The Markdown of this session's comparison, or a line saying why there is none."""
    from suite.records import runs

    config = plugin.config
    baseline_arg = config.getoption("compare_to")
    if not plugin.ran():
        return f"--compare-to {baseline_arg}: no case ran in this session, nothing to compare"
    try:
        baseline = runs.load(baseline_arg, Path(config.getoption("results_dir")))
        current = runs.load(plugin.run_dir)  # with pytest-xdist, the workers' run
    except SuiteError as exc:
        return f"--compare-to {baseline_arg}: {exc}"
    rep = report_model.Report.build(baseline, [current])
    out = config.getoption("report_dir") or ROOT / "reports" / f"{current.name}-vs-{baseline.name}"
    paths = report_files.write(rep, out)
    return report_md.markdown(rep) + f"\nreport: {paths['html']}\n"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    plugin = PluginSession.of(session.config)
    if session.config.getoption("compare_to") and not plugin.is_worker:
        plugin.report_md = render(plugin)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    text = PluginSession.of(config).report_md
    if text:
        terminalreporter.write_sep("-", "ftsuite comparison")
        for line in text.rstrip("\n").splitlines():
            terminalreporter.write_line(line)
