"""In padding-free batches no sequence learns to predict the next one's first token."""
from __future__ import annotations

import pytest

from suite.invariants import labels

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama, pytest.mark.lora,
              pytest.mark.adapter]


@pytest.mark.parametrize("mode", [pytest.param("packing", marks=pytest.mark.packing), "padding_free"])
def test_sequence_starts_are_masked(mode, tmp_path, invariant):
    invariant.holds(labels.measure_packed_starts(mode, tmp_path))


@pytest.mark.packing
def test_can_fail_when_starts_keep_their_labels(tmp_path, invariant):
    verdict = labels.measure_packed_starts("packing", tmp_path, collator_wrapper=labels.label_sequence_starts)
    invariant.breaks(verdict, "packed_starts.masked")
