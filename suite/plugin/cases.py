"""The pytest wiring: options, markers, one parametrized test per case. Work happens in suite/."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from suite import options
from suite.errors import CaseError
from suite.matrix import load, spec
from suite.plugin import benchmark as benchmarking
from suite.records.results import new_run_id, read_manifest
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


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in spec.MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    if not config.option.help:
        _load(config)  # a bad case file stops the session here, with its file and field named
        if config.getoption("benchmark_repeat") < 1:
            raise pytest.UsageError("--benchmark-repeat must be at least 1")
    if hasattr(config, "workerinput"):  # an xdist worker: the controller's run id (pytest_configure_node)
        config.option.run_id = config.workerinput.get("ftsuite_run_id") or config.getoption("run_id")
    elif not config.getoption("run_id"):
        config.option.run_id = new_run_id()  # one run for the session and every pytest-xdist worker


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Hand the controller's run id to each xdist worker: a worker parses the command line afresh and
    would otherwise make its own, and one pytest run would write one run folder per worker."""
    node.workerinput["ftsuite_run_id"] = node.config.getoption("run_id")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Regression mode runs a case per core (pytest-xdist, `-n auto` in pyproject.toml); benchmark mode
    stays sequential, so that a case's timings and memory are its own, with no other case on the cores."""
    if config.getoption("benchmark", False) and getattr(config.option, "numprocesses", None):
        config.option.numprocesses = 0
        config.option.dist = "no"


def _load(config: pytest.Config) -> list[spec.Case]:
    if not hasattr(config, "_ftsuite_cases"):
        mode = "benchmark" if config.getoption("benchmark") else "regression"
        try:
            config._ftsuite_cases = load.load_cases(config.getoption("cases_dir"), mode=mode)
        except CaseError as exc:
            raise pytest.UsageError(f"invalid case file: {exc}") from None
    return config._ftsuite_cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ft_case" in metafunc.fixturenames:
        params = [pytest.param(c, id=c.id, marks=[getattr(pytest.mark, m) for m in c.markers])
                  for c in _load(metafunc.config)]
        metafunc.parametrize("ft_case", params)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The cases this session will run (after -m, -k and --shard): the manifest lists them, so that
    a case with no record at the end is known to be lost, not unselected."""
    session.config._ftsuite_planned = [item.callspec.params["ft_case"].id for item in session.items
                                       if "ft_case" in getattr(getattr(item, "callspec", None), "params", {})]


@pytest.fixture(scope="session")
def ft_session(request: pytest.FixtureRequest):
    cfg = request.config
    try:
        session = RunSession(results_root=Path(cfg.getoption("results_dir")),
                             run_id=cfg.getoption("run_id") or new_run_id(),
                             mode="benchmark" if cfg.getoption("benchmark") else "regression",
                             timeout_s=cfg.getoption("case_timeout"),
                             keep_checkpoints=cfg.getoption("keep_checkpoints"),
                             profile=cfg.getoption("budget_profile"), budgets_dir=cfg.getoption("budgets_dir"),
                             planned=getattr(cfg, "_ftsuite_planned", None))
    except CaseError as exc:
        raise pytest.UsageError(f"invalid budget file: {exc}") from None
    cfg._ftsuite_session = session
    yield session
    session.finish()


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
    session = getattr(config, "_ftsuite_session", None)
    if session is not None and session._started:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(session._counts.items()))
        terminalreporter.write_sep("-", "ftsuite")
        terminalreporter.write_line(f"records of run {session.run_id} ({counts}) in {session.run_dir}")
    elif getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        run_dir = Path(config.getoption("results_dir")) / str(config.getoption("run_id"))
        if (run_dir / "manifest.json").is_file():  # the workers wrote it; the controller ran no case
            manifest = read_manifest(run_dir)
            counts = ", ".join(f"{n} {k}" for k, n in sorted((manifest.get("counts") or {}).items()))
            terminalreporter.write_sep("-", "ftsuite")
            terminalreporter.write_line(f"records of run {manifest['run_id']} ({counts}, {len(manifest['sessions'])} "
                                        f"worker sessions) in {run_dir}")
