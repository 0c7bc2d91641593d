"""pytest wiring for golden loss curves: options, the session's baseline store, a summary. Work is in
suite/judge/baselines.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from suite import options
from suite.judge.baselines import BaselineStore


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftsuite")
    group.addoption("--update-baselines", action="store_true", default=False,
                    help="rewrite the golden loss curves of the tiny cases that run (review and commit them)")
    options.add_baselines_dir(group.addoption)
    group.addoption("--no-baselines", action="store_true", default=False,
                    help="do not compare loss curves with golden curves")


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Give the run session (suite/plugin/cases.py's ft_session) its baseline store once it exists."""
    session = yield
    config = request.config
    if fixturedef.argname == "ft_session" and session.baselines is None and not config.getoption("no_baselines"):
        session.baselines = BaselineStore(Path(config.getoption("baselines_dir")),
                                          update=config.getoption("update_baselines"))
    return session


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    session = getattr(config, "_ftsuite_session", None)
    store = getattr(session, "baselines", None)
    if store is not None and store.events:
        terminalreporter.write_sep("-", f"ftsuite golden curves (profile {store.profile})")
        for line in store.events:
            terminalreporter.write_line(line)
