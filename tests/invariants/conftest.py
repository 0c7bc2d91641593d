"""Wiring for the invariant tests: an `invariant` fixture that asserts verdicts and keeps their
measured discrepancies, and a table of them at the end of the run. The work is in suite/invariants/."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

import pytest

from suite.invariants.members import raised_members
from suite.invariants.relations import RELATIONS, NotApplicable, Verdict

# (node id, relation name, discrepancy, broken on purpose?) of every verdict, gathered from the test
# reports: under pytest-xdist the workers measure and the controller, which writes the table and the
# JSON, only sees reports (their user_properties carry the verdicts across).
_MEASURED: list[tuple[str, str, float, bool]] = []
PROPERTY = "ftsuite_invariant"


def _as_list(verdicts: Verdict | Iterable[Verdict]) -> list[Verdict]:
    return [verdicts] if isinstance(verdicts, Verdict) else list(verdicts)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A relation the installed stack cannot express is not applicable: a skip that says why (reports
    count it apart from a verdict), never a failure or an error."""
    try:
        return (yield)
    except NotApplicable as exc:
        pytest.skip(f"not applicable: {exc}")


class InvariantRecorder:
    """Asserts verdicts; records (test, verdict, broken?) for the summary table."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def _keep(self, verdicts: list[Verdict], broken: bool) -> None:
        for v in verdicts:
            self._request.node.user_properties.append((v.relation.name, v.discrepancy))
            self._request.node.user_properties.append(
                (PROPERTY, {"relation": v.relation.name, "discrepancy": v.discrepancy, "broken": broken}))

    def holds(self, verdicts: Verdict | Iterable[Verdict]) -> None:
        """Every relation holds on the installed versions; no verdict at all is refused (nothing was
        checked, which is no pass)."""
        verdicts = _as_list(verdicts)
        assert verdicts, "holds() got no verdict: the measurement checked nothing, and nothing checked is no pass"
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


_OUTCOMES: dict[str, str] = {}  # node id -> outcome, for FTSUITE_INVARIANTS_JSON
_SKIPS: dict[str, str] = {}  # node id -> why it skipped (a version that cannot express the relation, ...)
_ERRORS: dict[str, str] = {}  # node id -> the first line of what it raised (not an invariant's verdict)
VERDICT_FAILURES = ("invariant violated", "the deliberate break did not violate", "no verdict for relation")


def _raised(report: pytest.TestReport) -> str | None:
    """The first error line of a test that raised something other than an invariant's verdict."""
    text = str(report.longrepr)
    if report.when == "call" and any(marker in text for marker in VERDICT_FAILURES):
        return None
    crash = getattr(report.longrepr, "reprcrash", None)
    return (crash.message if crash is not None else text).strip().splitlines()[0][:300] if text.strip() else "?"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each invariant test's outcome and measured verdicts; a failure in set-up or teardown counts too."""
    if report.when == "call":
        _MEASURED.extend((report.nodeid, prop["relation"], prop["discrepancy"], prop["broken"])
                         for key, prop in report.user_properties if key == PROPERTY)
    if report.when == "call" or (report.outcome != "passed" and report.nodeid not in _OUTCOMES):
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.failed and "XPASS(strict)" in str(report.longrepr):  # a known failure that now holds
            outcome = "xpassed"
        if report.failed and not hasattr(report, "wasxfail") and outcome != "xpassed":
            raised = _raised(report)
            if raised is not None:
                outcome = "errored"
                _ERRORS[report.nodeid] = raised
        _OUTCOMES[report.nodeid] = outcome if report.when == "call" else f"{outcome} in {report.when}"
        if report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
            _SKIPS[report.nodeid] = str(report.longrepr[2]).removeprefix("Skipped: ")


def _tables() -> tuple[dict[str, float], dict[str, float]]:
    worst: dict[str, float] = {}  # over the passing tests: the largest (at_least: the smallest) value
    broken: dict[str, float] = {}  # over the deliberate breaks: the weakest violation
    for _, name, discrepancy, is_broken in _MEASURED:
        worse, weaker = (min, max) if RELATIONS[name].at_least else (max, min)
        target, pick = (broken, weaker) if is_broken else (worst, worse)
        target[name] = pick(target[name], discrepancy) if name in target else discrepancy
    return worst, broken


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With FTSUITE_INVARIANTS_JSON set (upgrade-check, canary), write every relation's measured
    discrepancy and every test's outcome there: suite/report/compare.py compares two such files."""
    target = os.environ.get("FTSUITE_INVARIANTS_JSON")
    if not target or hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes it
        return
    worst, broken = _tables()
    # a member of a parametrized test that raised fails the relations its siblings measured (with what it
    # raised), which the siblings' measurements still show: suite/invariants/members.py
    raised = raised_members(_MEASURED, _ERRORS)
    relations = {name: {"statement": rel.statement, "tolerance": rel.tolerance, "at_least": rel.at_least,
                        "unit": rel.unit, "measured": _finite(worst.get(name)),
                        "holds": (rel.measure(worst[name]).passed and name not in raised) if name in worst else None,
                        "broken_on_purpose": _finite(broken.get(name)),
                        **({"raised": raised[name]} if name in raised else {})}
                 for name, rel in RELATIONS.items()}
    members = {node for nodes in raised.values() for node in nodes}
    tests = {node: "failed" if node in members else outcome for node, outcome in sorted(_OUTCOMES.items())}
    doc = {"kind": "ftsuite.invariants", "schema_version": 1, "relations": relations,
           "tests": tests, "skips": dict(sorted(_SKIPS.items())),
           "errors": dict(sorted(_ERRORS.items())),
           "measured_by": {name: sorted({node for node, rel, _, is_broken in _MEASURED
                                         if rel == name and not is_broken})
                           for name in sorted(worst)}}
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    if not _MEASURED:
        return
    worst, broken = _tables()
    raised = raised_members(_MEASURED, _ERRORS)  # a member that raised: the relation does not hold
    terminalreporter.write_sep("-", "ftsuite invariants: measured discrepancy (worst over tests) vs tolerance")
    terminalreporter.write_line(f"{'relation':30} {'measured':>10} {'bound':>11} {'holds':>5} {'when broken':>11}  unit")
    for name, rel in RELATIONS.items():
        if name in worst or name in broken:
            bound = (">= " if rel.at_least else "<= ") + _fmt(rel.tolerance)
            holds = "-" if name not in worst else ("yes" if rel.measure(worst[name]).passed and name not in raised
                                                   else "NO")
            terminalreporter.write_line(f"{name:30} {_fmt(worst.get(name)):>10} {bound:>11} {holds:>5} "
                                        f"{_fmt(broken.get(name)):>11}  {rel.unit}")
