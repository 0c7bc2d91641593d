"""The fast loop stays honest: a test without the slow mark that trains or starts a slow child fails
(tests/slow_work.py, wired in tests/conftest.py), and a matrix case or an invariant without it is refused
at collection. Each is made to fail here on purpose."""
from __future__ import annotations

import subprocess
import sys

import pytest

from suite.run import runner
from tests.slow_work import SlowWorkInFastTest, fast_only, slow_work, unmarked_training


@pytest.mark.parametrize("args", [[sys.executable, "-m", "pytest", "-q"], ["python3", "-m", "suite", "run"],
                                  "python -m pip install x", ["/usr/bin/chromium", "--headless"],
                                  ["uv", "venv"], [sys.executable, "-m", "torch.distributed.run", "x.py"]])
def test_slow_children_are_named(args):
    assert slow_work(args)


@pytest.mark.parametrize("args", [["git", "rev-parse", "HEAD"], [sys.executable, "-c", "print(1)"],
                                  ["bash", "benchmarks/gpu_session.sh", "--plan", "x"], [], "file -b x"])
def test_cheap_children_are_not(args):
    assert slow_work(args) is None


def test_a_pytest_child_in_a_test_without_the_mark_fails_before_it_starts():
    # this test has no slow mark: the conftest's guard is on, and refuses before the child exists
    with pytest.raises(SlowWorkInFastTest, match="test_fast_loop.py::.* starts `python -m pytest` but is not "
                                                 "marked slow"):
        subprocess.run([sys.executable, "-m", "pytest", "--version"], capture_output=True)


def test_training_a_case_in_a_test_without_the_mark_fails(tmp_path):
    with fast_only("planted::test_x"), pytest.raises(SlowWorkInFastTest, match="planted::test_x trains a case"):
        runner.run_in_child(runner.train_case, (None, tmp_path), tmp_path, 1)


def test_a_cheap_child_runs():
    with fast_only("planted::test_x"):
        assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0


class _Item:
    def __init__(self, nodeid: str, *marks: str) -> None:
        self.nodeid, self.marks = nodeid, marks

    def get_closest_marker(self, name: str):
        return name if name in self.marks else None


def test_a_case_or_an_invariant_without_the_slow_mark_is_found():
    items = [_Item("a", "case", "slow"), _Item("b", "invariant"), _Item("c", "case"), _Item("d"), _Item("e", "slow")]
    assert unmarked_training(items) == ["b", "c"]
