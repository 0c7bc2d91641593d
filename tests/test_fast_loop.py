"""The fast loop's list of slow tests names tests that exist (a renamed test would slip back into the
fast loop unnoticed otherwise)."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import SLOW, TESTS


def stale_entries(slow: dict[str, tuple[str, ...]], root: Path) -> list[str]:
    """Entries of the slow list whose module or test function does not exist."""
    out = []
    for module, names in slow.items():
        path = root / module
        if not path.is_file():
            out.append(f"{module}: no such test module")
            continue
        defined = {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
        out += [f"{module}::{name}: no such test" for name in names if name != "*" and name not in defined]
    return out


def test_every_slow_entry_names_a_test():
    assert stale_entries(SLOW, TESTS) == []


def test_a_stale_entry_is_found():
    planted = {**SLOW, "test_cases.py": ("test_that_was_renamed",), "test_gone.py": ("test_x",)}
    assert stale_entries(planted, TESTS) == ["test_cases.py::test_that_was_renamed: no such test",
                                             "test_gone.py: no such test module"]
