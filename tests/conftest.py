"""What every test of the suite's own needs."""
from __future__ import annotations

import pytest

from suite.tools.envs import XDIST_VARIABLES


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_for_subprocesses(monkeypatch):
    """Under pytest-xdist, a worker's environment says which worker it is (PYTEST_XDIST_WORKER...); a
    pytest that a test starts would inherit it and take itself for a worker (pytest-benchmark then
    writes no --benchmark-json). The test's own process keeps its identity in config.workerinput."""
    for name in XDIST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
