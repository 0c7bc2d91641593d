"""The suite's cases: the matrix's case files, checked against what the suite's backends train (the
one place the two meet, so that the matrix imports no backend)."""
from __future__ import annotations

from pathlib import Path

from suite.matrix import load, spec
from suite.matrix.selection import Selection, choose
from suite.matrix.spec import Case
from suite.paths import CASES
from suite.train.backends.registry import SUPPORT


def load_cases(directory: str | Path = CASES, mode: str = "regression") -> list[Case]:
    """Every case declared under `directory`, validated, in file order."""
    return load.load_cases(directory, mode, SUPPORT)


def markers() -> dict[str, str]:
    """Every marker a case can carry, with its description (registered for --strict-markers)."""
    return spec.markers(SUPPORT.trainers)


def selected(selection: Selection, directory: str | Path = CASES) -> list[Case]:
    """The cases a -m / -k selection chooses, as pytest would choose tests/test_matrix.py's items; a
    SelectionError (a usage error) for a wrong expression, an unknown marker or a selection of nothing."""
    return choose(load_cases(directory), selection, markers())
