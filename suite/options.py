"""Options that the CLI and the pytest plugin share, defined once (pytest-benchmark's add_*_options):
each adder takes an `addoption` callable, argparse's `add_argument` or a pytest group's `addoption`."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from suite import paths
from suite.errors import UsageError

AddOption = Callable[..., object]


def add_results_dir(addoption: AddOption) -> None:
    addoption("--results-dir", default=str(paths.results_root()),
              help="where runs are written and run ids are looked up (default: $FTSUITE_RESULTS or results/)")


def add_cases_dir(addoption: AddOption) -> None:
    addoption("--cases-dir", default=str(paths.CASES), help="where the case files are (default: cases/)")


def add_budgets_dir(addoption: AddOption) -> None:
    addoption("--budgets-dir", default=str(paths.BUDGETS), help="where budget files are (default: cases/budgets/)")


def add_extended(addoption: AddOption) -> None:
    addoption("--extended", action="store_true", default=False,
              help="run the cases of the extended tier too (rows with tier: extended): left out otherwise, with a "
                   "line that says so; an -m that names the tier's marker (-m extended) asks for them as well")


def add_baselines_dir(addoption: AddOption) -> None:
    addoption("--baselines-dir", default=str(paths.baselines_root()),
              help="where golden loss curves are kept, one folder per hardware profile and kernel class "
                   "(default: $FTSUITE_BASELINES or results/baselines/)")


def add_fail_on(addoption: AddOption) -> None:
    from suite.report.compare import DEFAULT_FAIL_ON, GATES

    addoption("--fail-on", default=DEFAULT_FAIL_ON, metavar="LIST",
              help=f"verdicts that fail the gate: a comma list of {', '.join(GATES)}, or none (default: all)")


def check_out_dir(value: str | Path | None, flag: str = "--out") -> Path | None:
    """An output folder: one that exists, or one that can be made (no file in its place or above it).
    Checked before any work, so that a report is not rendered only to fail on its first write."""
    if value is None or value == "":
        return None
    path = Path(value)
    for at in (path, *path.parents):
        if at.exists():
            if not at.is_dir():
                where = "is a file" if at == path else f"cannot be made: {at} is a file"
                raise UsageError(f"{flag} {value}: {where}; {flag} names a folder (made if missing)")
            return path
    return path
