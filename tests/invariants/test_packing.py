"""Packed (padding-free) sequences do not see each other, and a packed run trains like an unpacked one."""
from __future__ import annotations

import pytest

from suite.invariants import features

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama, pytest.mark.packing]
LORA = [pytest.mark.lora, pytest.mark.adapter]


@pytest.mark.parametrize("attention", [pytest.param("sdpa", marks=pytest.mark.sdpa),
                                       pytest.param("eager", marks=pytest.mark.eager)])
@pytest.mark.lora
@pytest.mark.adapter
def test_packed_examples_are_isolated(attention, tmp_path, invariant):
    invariant.holds(features.measure_packing_forward(tmp_path, attention))


@pytest.mark.parametrize("method", [pytest.param("full", marks=pytest.mark.full), pytest.param("lora", marks=LORA)])
def test_packed_run_equals_unpacked_run(method, tmp_path, invariant):
    invariant.holds(features.measure_packing_runs(tmp_path, method))


@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_when_position_ids_do_not_restart(tmp_path, invariant):
    verdicts = features.measure_packing_forward(tmp_path, break_positions=True)
    invariant.breaks(verdicts, "packing.no_cross_attention")
    invariant.breaks(verdicts, "packing.per_example_loss")


@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_when_the_collator_loses_boundaries(tmp_path, invariant):
    verdicts = features.measure_packing_runs(tmp_path, collator_wrapper=features.continuous_positions)
    invariant.breaks(verdicts, "packing.run_loss")
    invariant.breaks(verdicts, "packing.run_weights")
