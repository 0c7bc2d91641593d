"""The invariant fixture itself (tests/invariants/conftest.py): a relation that checked nothing never passes."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("nothing", [[], (), iter(())], ids=["list", "tuple", "generator"])
def test_holds_refuses_no_verdict(invariant, nothing):
    with pytest.raises(AssertionError, match="holds\\(\\) got no verdict"):
        invariant.holds(nothing)
