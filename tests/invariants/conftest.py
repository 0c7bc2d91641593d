"""Wiring for the invariant tests: an `invariant` fixture that asserts verdicts and keeps their
measured discrepancies, and a table of them at the end of the run. The work is in suite/invariants/."""
from __future__ import annotations

import math
from typing import Iterable

import pytest

from suite.invariants.relations import RELATIONS, Verdict

_MEASURED = pytest.StashKey[list]()


def _as_list(verdicts: Verdict | Iterable[Verdict]) -> list[Verdict]:
    return [verdicts] if isinstance(verdicts, Verdict) else list(verdicts)


class InvariantRecorder:
    """Asserts verdicts; records (test, verdict, broken?) for the summary table."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._table = request.config.stash.setdefault(_MEASURED, [])

    def _keep(self, verdicts: list[Verdict], broken: bool) -> None:
        for v in verdicts:
            self._table.append((self._request.node.nodeid, v, broken))
            self._request.node.user_properties.append((v.relation.name, v.discrepancy))

    def holds(self, verdicts: Verdict | Iterable[Verdict]) -> None:
        """Every relation holds on the installed versions."""
        verdicts = _as_list(verdicts)
        for v in verdicts:
            print(v.describe())
        self._keep(verdicts, broken=False)
        failures = [v.fails() for v in verdicts if not v.passed]
        assert not failures, "\n".join(failures)

    def breaks(self, verdicts: Verdict | Iterable[Verdict], name: str) -> None:
        """The deliberate break violates relation `name`, and the message names the relation."""
        verdicts = _as_list(verdicts)
        for v in verdicts:
            print("broken on purpose: " + v.describe())
        chosen = [v for v in verdicts if v.relation.name == name]
        assert chosen, f"no verdict for relation {name!r} among {[v.relation.name for v in verdicts]}"
        self._keep(chosen, broken=True)
        message = chosen[0].fails()
        assert message is not None, f"the deliberate break did not violate [{name}]: {chosen[0].describe()}"
        assert f"[{name}]" in message and RELATIONS[name].statement in message, message


@pytest.fixture
def invariant(request: pytest.FixtureRequest) -> InvariantRecorder:
    return InvariantRecorder(request)


@pytest.fixture(autouse=True, scope="session")
def _quiet_stack():
    """The stack's progress bars and advisory logs would bury pytest's output."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    yield


def _fmt(x: float | None) -> str:
    return "-" if x is None else ("inf" if math.isinf(x) else f"{x:.3g}")


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    table = config.stash.get(_MEASURED, [])
    if not table:
        return
    worst: dict[str, float] = {}  # over the passing tests: the largest (at_least: the smallest) value
    broken: dict[str, float] = {}  # over the deliberate breaks: the weakest violation
    for _, v, is_broken in table:
        name = v.relation.name
        worse, weaker = (min, max) if v.relation.at_least else (max, min)
        target, pick = (broken, weaker) if is_broken else (worst, worse)
        target[name] = pick(target[name], v.discrepancy) if name in target else v.discrepancy
    terminalreporter.write_sep("-", "ftsuite invariants: measured discrepancy (worst over tests) vs tolerance")
    terminalreporter.write_line(f"{'relation':30} {'measured':>10} {'bound':>11} {'holds':>5} {'when broken':>11}  unit")
    for name, rel in RELATIONS.items():
        if name in worst or name in broken:
            bound = (">= " if rel.at_least else "<= ") + _fmt(rel.tolerance)
            holds = "-" if name not in worst else ("yes" if rel.measure(worst[name]).passed else "NO")
            terminalreporter.write_line(f"{name:30} {_fmt(worst.get(name)):>10} {bound:>11} {holds:>5} "
                                        f"{_fmt(broken.get(name)):>11}  {rel.unit}")
