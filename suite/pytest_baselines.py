"""pytest wiring for golden loss curves: options, the session's baseline store, a summary. Work is in
suite/baselines.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from suite.baselines import BaselineStore

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftsuite")
    group.addoption("--update-baselines", action="store_true", default=False,
                    help="rewrite the golden loss curves of the tiny cases that run (review and commit them)")
    group.addoption("--baselines-dir", default=os.environ.get("FTSUITE_BASELINES", str(ROOT / "results" / "baselines")),
                    help="where golden loss curves are kept, one folder per hardware profile "
                         "(default: results/baselines/)")
    group.addoption("--no-baselines", action="store_true", default=False,
                    help="do not compare loss curves with golden curves")


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Give the run session (suite/pytest_plugin.py's ft_session) its baseline store once it exists."""
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
