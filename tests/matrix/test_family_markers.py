"""The model axis's markers select each family of 2026 (suite/train/chat.py's STYLES): `-m <family>` picks exactly
that family's cases, tiny and full-size, through the markers the matrix gives each case (suite/matrix/spec.py's
Case.markers, which suite/plugin/cases.py hands pytest) and pytest's own evaluation of a -m expression."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from _pytest.mark.expression import Expression

from suite.cases import load_cases, markers
from suite.paths import ROOT
from suite.train.chat import STYLES


def selected(expression: str, cases) -> list:
    """The cases `pytest -m expression` runs: pytest's evaluation of the expression over each case's markers."""
    compiled = Expression.compile(expression)
    return [c for c in cases if compiled.evaluate(lambda name, c=c: name in c.markers)]


def selection_problems(cases, families) -> list[str]:
    """What `-m <family>` and `-m "<family> and tiny"` select otherwise than that family's cases."""
    problems = []
    for family in families:
        own = {c.id for c in cases if c.model.arch == family}
        picked = {c.id for c in selected(family, cases)}
        if picked != own:
            problems.append(f"-m {family} selects {sorted(picked ^ own)[:3]} otherwise than the family's cases")
        tiny = [c.id for c in selected(f"{family} and tiny", cases)]
        if len(tiny) < 1 or any(c.model.size != "tiny" for c in cases if c.id in tiny):
            problems.append(f"-m '{family} and tiny' selects {tiny}: no tiny case of the family, or another size")
    return problems


def test_every_family_marker_is_registered_and_selects_its_cases():
    cases = load_cases(ROOT / "cases")
    assert set(STYLES) <= set(markers()), "a family's marker is not registered (--strict-markers would refuse it)"
    assert not selection_problems(cases, sorted(STYLES))
    for family in STYLES:  # the family's tiny case and its full-size rows
        assert {c.model.size for c in selected(family, cases)} >= {"tiny", "large"}, family


def _fake(case_id: str, arch: str, size: str, marks: tuple[str, ...]):
    return SimpleNamespace(id=case_id, model=SimpleNamespace(arch=arch, size=size), markers=marks)


@pytest.mark.parametrize("marks,problem", [
    (("case", "tiny"), "-m gemma3 selects"),  # the architecture's marker lost
    (("case", "tiny", "gemma3", "gemma4"), "-m gemma4 selects"),  # another family's marker too
])
def test_can_fail_when_a_case_lacks_or_borrows_a_family_marker(marks, problem):
    cases = [_fake("tiny-gemma3/x", "gemma3", "tiny", marks), _fake("tiny-gemma4/x", "gemma4", "tiny",
                                                                     ("case", "tiny", "gemma4"))]
    found = selection_problems(cases, ["gemma3", "gemma4"])
    assert any(p.startswith(problem) for p in found), found
