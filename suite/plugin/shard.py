"""`--shard I/N`: keep one deterministic slice of the collected cases, to spread a run over runners.

A case goes to shard 1 + (sha256 of its id mod N). The assignment depends on the case id and N
only, never on which other cases exist or were selected, so the N slices are disjoint, together
hold every case, and a case stays on the same runner from one night to the next (its benchmark
history is then measured on one machine) while N is unchanged. Tests that are not cases (the
suite's own unit tests) run on shard 1 only: they are cheap, and N copies of one failure help
nobody.
"""
from __future__ import annotations

import re
from typing import Sequence

import pytest

from suite.matrix.selection import shard_of
from suite.plugin.state import PluginSession

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
USAGE = "--shard takes I/N with 1 <= I <= N (this runner's slice I of N), e.g. --shard 2/4"


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4); anything else raises ValueError with the usage."""
    match = _SPEC.match(text or "")
    if not match:
        raise ValueError(f"{USAGE}; got {text!r}")
    i, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"{USAGE}; got {text!r}")
    return i, n


def case_id(item: pytest.Item) -> str | None:
    """The case id of a matrix item (marker `case`), or None for a unit test."""
    if item.get_closest_marker("case") is None:
        return None
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return item.nodeid
    case = callspec.params.get("ft_case")
    return getattr(case, "id", None) or callspec.id


def select(items: Sequence[pytest.Item], i: int, n: int) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(kept, deselected) for shard i of n."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        cid = case_id(item)
        mine = i == 1 if cid is None else shard_of(cid, n) == i
        (keep if mine else drop).append(item)
    return keep, drop


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftsuite", "ftsuite: fine-tuning regression and benchmark cases")
    group.addoption("--shard", default=None, metavar="I/N",
                    help="run slice I of N of the cases (by a stable hash of the case id); "
                         "unit tests run on slice 1 only")


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("shard", None)
    if spec is not None:
        try:
            PluginSession.of(config).shard = parse_shard(spec)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Last, after -m and -k: the cases left are the whole run's plan, which the manifest records beside
    this slice's (a merge of the shards names a missing shard's cases from it: suite/records/merge.py)."""
    session = PluginSession.of(config)
    if session.shard is None:
        return
    session.shard_plan = [cid for cid in map(case_id, items) if cid is not None]
    keep, drop = select(items, *session.shard)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str | None:
    shard = PluginSession.of(config).shard
    return f"ftsuite: shard {shard[0]}/{shard[1]}" if shard else None
