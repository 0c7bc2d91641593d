"""A parametrized invariant test is a set of members (one per method, loss type, trainer, ...) that measure
the same relations. A member that raises measured nothing, so its verdicts are never recorded; but its
siblings (the same test function, other parameters) say which relations it was measuring. The raise is
that member's failure of those relations, carrying its exception, while the siblings are still measured:
the relation does not hold, and the report says which member raised what (suite/report/invariants.py).
A test whose every member raised, or one without parameters, measured nothing to attribute: it stays an
errored test. tests/invariants/conftest.py records what this returns in FTSUITE_INVARIANTS_JSON."""
from __future__ import annotations

from typing import Iterable


def family(node: str) -> str:
    """A test's node id without its parameters: `tests/x.py::test_a[lora-nll]` -> `tests/x.py::test_a`."""
    return node.split("[", 1)[0]


def raised_members(measured: Iterable[tuple[str, str, float, bool]], errors: dict[str, str]) -> dict[str, dict[str, str]]:
    """relation -> {node id: the exception's first line} of the members that raised, for each relation their
    siblings measured. `measured`: (node id, relation, discrepancy, broken on purpose?) of every verdict kept;
    `errors`: node id -> what the test raised (other than a verdict)."""
    by_family: dict[str, set[str]] = {}
    for node, relation, _, broken in measured:
        if not broken:  # a deliberate break's relation is not what its siblings hold
            by_family.setdefault(family(node), set()).add(relation)
    out: dict[str, dict[str, str]] = {}
    for node, message in sorted(errors.items()):
        for relation in sorted(by_family.get(family(node), ())):
            out.setdefault(relation, {})[node] = message
    return out
