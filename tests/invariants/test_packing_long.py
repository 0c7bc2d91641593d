"""trl's packing strategies on conversations longer than max_length keep what their documentation promises."""
from __future__ import annotations

import pytest

from suite.invariants import packing_faults as faults
from suite.invariants import packing_long as pl

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama, pytest.mark.packing,
              pytest.mark.options, pytest.mark.lora, pytest.mark.adapter, pytest.mark.long_messages]


@pytest.mark.packing_bfd
def test_bfd_truncates_each_conversation(tmp_path, invariant):
    invariant.holds(pl.measure_long_packing(tmp_path, "packing_bfd"))


@pytest.mark.packing_split
def test_bfd_split_keeps_every_piece(tmp_path, invariant):
    invariant.holds(pl.measure_long_packing(tmp_path, "packing_split"))


@pytest.mark.packing_wrapped
def test_wrapped_keeps_the_stream(tmp_path, invariant):
    invariant.holds(pl.measure_long_packing(tmp_path, "packing_wrapped"))


@pytest.mark.packing_bfd
def test_can_fail_when_a_sequence_spans_two_conversations(tmp_path, invariant):
    verdicts = pl.measure_long_packing(tmp_path, "packing_bfd", fault=faults.two_conversations)
    invariant.breaks(verdicts, "packing_long.bfd_prefixes")


@pytest.mark.packing_split
def test_can_fail_when_the_overflow_is_dropped(tmp_path, invariant):
    verdicts = pl.measure_long_packing(tmp_path, "packing_split", fault=faults.overflow_dropped)
    invariant.breaks(verdicts, "packing_long.split_pieces")
    invariant.breaks(verdicts, "packing_long.tokens")


@pytest.mark.packing_wrapped
def test_can_fail_when_a_token_is_lost_at_each_boundary(tmp_path, invariant):
    verdicts = pl.measure_long_packing(tmp_path, "packing_wrapped", fault=faults.boundary_token_dropped)
    invariant.breaks(verdicts, "packing_long.wrapped_stream")
    invariant.breaks(verdicts, "packing_long.tokens")
