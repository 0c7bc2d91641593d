"""What only a test marked slow may do: train, or start a pytest, the suite's CLI, an environment build
or a browser. tests/conftest.py holds every test without the mark to it (the fast loop,
`pytest -m "not slow"`, stays fast because a forgotten mark fails instead of slowing it down)."""
from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

import pytest

# `python -m X` children that only a slow test starts: a pytest, the suite's CLI (it runs cases), an
# environment build or install, a distributed launch. Cheap children (git, `python -c`, bash usage
# errors, the runner's own forkserver children) are no slow work (tests/run/test_runner.py's are fast).
SLOW_MODULES = ("pytest", "suite", "pip", "venv", "uv", "torch.distributed.run", "accelerate.commands.launch",
                "suite.run.distributed_child")
SLOW_PROGRAMS = ("pytest", "uv", "pip", "pip3", "virtualenv", "torchrun", "accelerate")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


class SlowWorkInFastTest(AssertionError):
    """A test without the slow mark trained or started a slow child."""


def _words(args: str | bytes | os.PathLike | Sequence) -> list[str]:
    if isinstance(args, (str, bytes)):
        return shlex.split(os.fsdecode(args))
    if isinstance(args, os.PathLike):
        return [os.fspath(args)]
    return [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args]


def slow_work(args: str | bytes | os.PathLike | Sequence) -> str | None:
    """What a child's command line does that only a slow test may do, or None."""
    words = _words(args)
    if not words:
        return None
    program = Path(words[0]).name
    if program.startswith("python") and "-m" in words[1:-1]:
        module = words[words.index("-m") + 1]
        return f"starts `python -m {module}`" if module in SLOW_MODULES else None
    if program in SLOW_PROGRAMS:
        return f"starts {program}"
    if program in BROWSERS:
        return f"starts a browser ({program})"
    return None


@contextlib.contextmanager
def fast_only(nodeid: str) -> Iterator[None]:
    """Inside, training a case or starting a slow child raises SlowWorkInFastTest naming the test."""
    def refuse(what: str) -> SlowWorkInFastTest:
        return SlowWorkInFastTest(f"{nodeid} {what} but is not marked slow: mark the test "
                                  "`@pytest.mark.slow`, or its module `pytestmark = pytest.mark.slow` "
                                  "(tests/conftest.py)")

    execute_child = subprocess.Popen._execute_child

    def checked_child(self, args, *rest, **kwargs):
        what = slow_work(args)
        if what:
            raise refuse(what)
        return execute_child(self, args, *rest, **kwargs)

    def training(*args, **kwargs):
        raise refuse("trains")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess.Popen, "_execute_child", checked_child)
        # a case trains in its own child, started here (suite/run/session.py; a skipped case starts none,
        # the runner's own tests start children that do not train); in-process training goes through
        # transformers' Trainer, patched where it is loaded (an import inside the test escapes this)
        if runner := sys.modules.get("suite.run.runner"):
            in_child = runner.run_in_child

            def child(target, *args, **kwargs):
                if target in (runner.train_case, runner.train_spawned):
                    raise refuse("trains a case")
                return in_child(target, *args, **kwargs)
            mp.setattr(runner, "run_in_child", child)
        if "transformers.trainer" in sys.modules:
            mp.setattr(sys.modules["transformers.trainer"].Trainer, "train", training)
        yield


def unmarked_training(items: Sequence[pytest.Item]) -> list[str]:
    """Node ids of matrix cases and invariants (they train, by definition) without the slow mark."""
    return [i.nodeid for i in items
            if (i.get_closest_marker("case") or i.get_closest_marker("invariant")) and not i.get_closest_marker("slow")]
