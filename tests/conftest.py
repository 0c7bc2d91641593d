"""What every test of the suite's own needs."""
from __future__ import annotations

import pytest

from suite.tools.envs import XDIST_VARIABLES
from tests.slow_work import fast_only, unmarked_training

# The fast inner loop is `python -m pytest -m "not slow"`: every unit test of every stage, without
# training. A test is marked slow in its own module (`pytestmark = pytest.mark.slow` when all its tests
# are, `@pytest.mark.slow` on one test) when it trains (the matrix's cases, the invariants, a module
# fixture that trains), starts a pytest, the suite's CLI, an environment build or a browser, or took
# 0.4 s or more on the 2-core CI machine (AMD EPYC Zen 4, 2026-12-05, one run of the whole suite with
# --durations=0). The first kinds are held below: a test without the mark that trains or starts such a
# child fails, saying what to mark (tests/test_fast_loop.py makes it fail on purpose). The time is not
# held: a wall clock is never asserted in a test; a slow test left unmarked makes the fast loop slower,
# never drops coverage (the whole suite still runs it).


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains, starts a child or a browser: left out of the fast loop "
                                       "(-m 'not slow'; tests/conftest.py)")


def pytest_collection_modifyitems(config, items):
    if unmarked := unmarked_training(items):
        raise pytest.UsageError("a matrix case or an invariant trains: mark its module "
                                f"`pytestmark = pytest.mark.slow` (tests/conftest.py): {', '.join(unmarked[:5])}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test without the slow mark runs, fixtures included, where slow work raises (tests/slow_work.py)."""
    if item.get_closest_marker("slow"):
        return (yield)
    with fast_only(item.nodeid):
        return (yield)


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_for_subprocesses(monkeypatch):
    """Under pytest-xdist, a worker's environment says which worker it is (PYTEST_XDIST_WORKER...); a
    pytest that a test starts would inherit it and take itself for a worker (pytest-benchmark then
    writes no --benchmark-json). The test's own process keeps its identity in config.workerinput."""
    for name in XDIST_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_accelerate_state_leaks_out_of_a_test():
    """accelerate reads ACCELERATE_* from the environment, and transformers sets ACCELERATE_USE_DEEPSPEED around its
    PartialState (left set when that raises): one test's leftover would make every later trainer of the worker, and
    every child it starts, a DeepSpeed one. Each test leaves the ACCELERATE_* variables as it found them."""
    import os

    before = {k: v for k, v in os.environ.items() if k.startswith("ACCELERATE_")}
    yield
    for key in [k for k in os.environ if k.startswith("ACCELERATE_") and k not in before]:
        del os.environ[key]
    os.environ.update(before)
