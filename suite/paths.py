"""Where things are: the checkout, and the folders runs, cases, budgets and reports default to."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "cases"
BUDGETS = CASES / "budgets"
REPORTS = ROOT / "reports"
TESTS = ROOT / "tests"
LOCK_FILE = ROOT / "requirements" / "control.txt"  # the control lock (suite/tools/lock.py makes it)


def results_root() -> Path:
    """Where runs are written and looked up: $FTSUITE_RESULTS, else results/ of this checkout."""
    return Path(os.environ.get("FTSUITE_RESULTS", str(ROOT / "results")))


def baselines_root() -> Path:
    """Golden curves, one folder per hardware profile: $FTSUITE_BASELINES, else results/baselines/."""
    return Path(os.environ.get("FTSUITE_BASELINES", str(ROOT / "results" / "baselines")))


def display(path: str | Path) -> str:
    """A path as messages show it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
