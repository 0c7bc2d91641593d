"""What the tests of a trainer's (or a feature's) checks share: real runs of one case, clean and under each
known fault, read by the module's tests."""
from __future__ import annotations

import pytest

from tests.helpers import fault_runs


@pytest.fixture(scope="module")
def records(request, tmp_path_factory) -> dict:
    """The module's MATRIX (its first case) run clean and under each of its FAULTS (tests.helpers.fault_runs):
    {fault, or "clean": its CaseRecord}. It trains: the tests that read it are marked slow."""
    module = request.module
    name = module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return fault_runs(tmp_path_factory.mktemp(name), module.MATRIX, module.FAULTS)
