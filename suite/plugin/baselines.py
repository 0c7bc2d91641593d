"""pytest wiring for golden loss curves: options, the session's baseline store, a summary. Work is in
suite/judge/baselines.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from suite import options
from suite.plugin.state import PluginSession


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftsuite")
    group.addoption("--update-baselines", action="store_true", default=False,
                    help="rewrite the golden loss curves of the tiny cases that run (review and commit them)")
    options.add_baselines_dir(group.addoption)
    group.addoption("--no-baselines", action="store_true", default=False,
                    help="do not compare loss curves with golden curves")


def pytest_configure(config: pytest.Config) -> None:
    """The run session (suite/plugin/state.py) compares each tiny case's loss curve with its golden curve."""
    if not config.getoption("no_baselines"):
        PluginSession.of(config).compare_baselines(Path(config.getoption("baselines_dir")),
                                                   update=config.getoption("update_baselines"))


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    store = PluginSession.of(config).baselines
    if store is not None and store.events:
        terminalreporter.write_sep("-", f"ftsuite golden curves (profile {store.profile})")
        for line in store.events:
            terminalreporter.write_line(line)
