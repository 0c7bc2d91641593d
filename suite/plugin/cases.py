"""The pytest wiring: options, markers, one parametrized test per case. The session's state is
suite/plugin/state.py's PluginSession; work happens in suite/."""
from __future__ import annotations

import os

import pytest

from suite import options
from suite.cases import markers
from suite.matrix import spec
from suite.plugin import benchmark as benchmarking
from suite.plugin.state import PluginSession
from suite.run.session import RunSession


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftsuite", "ftsuite: fine-tuning regression and benchmark cases")
    group.addoption("--benchmark", action="store_true", default=False,
                    help="benchmark mode: run each case long enough for stable step times "
                         "(training.benchmark_steps instead of training.max_steps)")
    group.addoption("--run-id", default=os.environ.get("FTSUITE_RUN_ID"),
                    help="name of the results folder results/<run-id>/ (default: a timestamp)")
    options.add_results_dir(group.addoption)
    options.add_cases_dir(group.addoption)
    group.addoption("--case-timeout", type=float, default=None,
                    help="seconds before a case's child is killed (default: each case's timeout_s)")
    group.addoption("--keep-checkpoints", choices=("auto", "always", "never"), default="auto",
                    help="keep saved checkpoints: auto keeps those under 256 MiB")
    group.addoption("--benchmark-repeat", type=int, default=1, metavar="N",
                    help="with --benchmark: run each case N times and record every repeat (noise from data)")
    group.addoption("--budget-profile", default=None, metavar="NAME",
                    help="hardware profile whose budgets apply (default: detected from the GPU, or cpu); "
                         "budgets are read from cases/budgets/NAME.yaml")
    options.add_budgets_dir(group.addoption)
    options.add_extended(group.addoption)


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in markers().items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    PluginSession.of(config).configure()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """-m and -k checked before pytest-xdist starts its workers (its own sessionstart, trylast)."""
    PluginSession.of(session.config).check_selection()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Hand what the controller decided (the run id) to each xdist worker (suite/plugin/state.py)."""
    node.workerinput.update(PluginSession.of(node.config).to_workerinput())


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Regression mode runs a case per core (pytest-xdist, `-n auto` in pyproject.toml); benchmark mode
    stays sequential, so that a case's timings and memory are its own, with no other case on the cores."""
    if config.getoption("benchmark", False) and getattr(config.option, "numprocesses", None):
        config.option.numprocesses = 0
        config.option.dist = "no"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ft_case" in metafunc.fixturenames:
        params = [pytest.param(c, id=c.id, marks=[getattr(pytest.mark, m) for m in c.markers])
                  for c in PluginSession.of(metafunc.config).load_cases()]
        metafunc.parametrize("ft_case", params)


def pytest_collection_finish(session: pytest.Session) -> None:
    PluginSession.of(session.config).plan(session.items)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The cases of a tier not asked for are left out (after -m and -k, so that the count is of the cases they
    chose), and a rerun into a stopped run leaves out the cases that have a record (suite/run/resume.py)."""
    PluginSession.of(config).leave_out_tiers(items)
    PluginSession.of(config).leave_out_recorded(items)


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    return PluginSession.of(config).tier_line()


def pytest_report_header(config: pytest.Config) -> str | None:
    return PluginSession.of(config).resume_line()


def pytest_sessionfinish(session: pytest.Session) -> None:
    PluginSession.of(session.config).finish_stopped()


@pytest.fixture(scope="session")
def ft_session(request: pytest.FixtureRequest):
    plugin = PluginSession.of(request.config)
    yield plugin.open_run()
    plugin.close_run(interrupted=request.session.exitstatus == pytest.ExitCode.INTERRUPTED)


def run_case(session: RunSession, case: spec.Case, request: pytest.FixtureRequest) -> None:
    """Run a case (N times with --benchmark-repeat) and turn the outcome into pytest's: skip with
    the reason, or fail with the messages; in benchmark mode, hand the step times to pytest-benchmark."""
    repeats = request.config.getoption("benchmark_repeat") if session.mode == "benchmark" else 1
    runs = [session.run_case(case) for _ in range(repeats)]
    if runs[0].status == "skipped":
        pytest.skip(runs[0].reason)
    if session.mode == "benchmark":
        benchmarking.report(request.getfixturevalue("benchmark"), [r.record for r in runs])
    failed = [r for r in runs if r.status != "passed"]
    if failed:
        prefix = [f"{len(failed)} of {repeats} repeats failed"] if repeats > 1 else []
        pytest.fail("\n".join(prefix + [m for r in failed for m in r.failure_messages]), pytrace=False)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    text = PluginSession.of(config).summary()
    if text:
        terminalreporter.write_sep("-", "ftsuite")
        for line in text.splitlines():
            terminalreporter.write_line(line)
