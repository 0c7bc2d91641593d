"""The pytest wiring: options, markers, one parametrized test per case. Work happens in suite/."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from suite import cases as cases_mod
from suite.errors import CaseError
from suite.results import new_run_id
from suite.session import RunSession

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftsuite", "ftsuite: fine-tuning regression and benchmark cases")
    group.addoption("--benchmark", action="store_true", default=False,
                    help="benchmark mode: run each case long enough for stable step times "
                         "(training.benchmark_steps instead of training.max_steps)")
    group.addoption("--run-id", default=os.environ.get("FTSUITE_RUN_ID"),
                    help="name of the results folder results/<run-id>/ (default: a timestamp)")
    group.addoption("--results-dir", default=os.environ.get("FTSUITE_RESULTS", str(ROOT / "results")),
                    help="where runs are written (default: results/)")
    group.addoption("--cases-dir", default=str(ROOT / "cases"), help="where the case files are (default: cases/)")
    group.addoption("--case-timeout", type=float, default=None,
                    help="seconds before a case's child is killed (default: each case's timeout_s)")
    group.addoption("--keep-checkpoints", choices=("auto", "always", "never"), default="auto",
                    help="keep saved checkpoints: auto keeps those under 256 MiB")


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in cases_mod.MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    if not config.option.help:
        _load(config)  # a bad case file stops the session here, with its file and field named


def _load(config: pytest.Config) -> list[cases_mod.Case]:
    if not hasattr(config, "_ftsuite_cases"):
        mode = "benchmark" if config.getoption("benchmark") else "regression"
        try:
            config._ftsuite_cases = cases_mod.load_cases(config.getoption("cases_dir"), mode=mode)
        except CaseError as exc:
            raise pytest.UsageError(f"invalid case file: {exc}") from None
    return config._ftsuite_cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ft_case" in metafunc.fixturenames:
        params = [pytest.param(c, id=c.id, marks=[getattr(pytest.mark, m) for m in c.markers])
                  for c in _load(metafunc.config)]
        metafunc.parametrize("ft_case", params)


@pytest.fixture(scope="session")
def ft_session(request: pytest.FixtureRequest):
    cfg = request.config
    session = RunSession(results_root=Path(cfg.getoption("results_dir")),
                         run_id=cfg.getoption("run_id") or new_run_id(),
                         mode="benchmark" if cfg.getoption("benchmark") else "regression",
                         timeout_s=cfg.getoption("case_timeout"),
                         keep_checkpoints=cfg.getoption("keep_checkpoints"))
    cfg._ftsuite_session = session
    yield session
    session.finish()


def run_case(session: RunSession, case: cases_mod.Case) -> None:
    """Run a case and turn its outcome into pytest's: skip with the reason, or fail with the messages."""
    result = session.run_case(case)
    if result.status == "skipped":
        pytest.skip(result.reason)
    if result.status != "passed":
        pytest.fail("\n".join(result.failure_messages), pytrace=False)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    session = getattr(config, "_ftsuite_session", None)
    if session is not None and session._started:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(session._counts.items()))
        terminalreporter.write_sep("-", "ftsuite")
        terminalreporter.write_line(f"records of run {session.run_id} ({counts}) in {session.run_dir}")
