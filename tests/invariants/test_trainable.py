"""Only the adapter (and modules_to_save) trains, under reentrant and non-reentrant checkpointing."""
from __future__ import annotations

import pytest

from suite.invariants import runs

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama, pytest.mark.lora,
              pytest.mark.adapter, pytest.mark.gradient_checkpointing]


@pytest.mark.parametrize("reentrant", [True, False], ids=["reentrant", "non_reentrant"])
def test_only_the_adapter_trains(reentrant, tmp_path, invariant):
    invariant.holds(runs.measure_trainable(tmp_path, reentrant=reentrant))


def test_can_fail_without_input_grads_under_reentrant_checkpointing(tmp_path, invariant):
    verdicts = runs.measure_trainable(tmp_path, reentrant=True, sabotage=runs.no_input_grads)
    invariant.breaks(verdicts, "trainable.lora_b_nonzero")


def test_can_fail_with_an_unfrozen_base_weight(tmp_path, invariant):
    verdicts = runs.measure_trainable(tmp_path, reentrant=False, sabotage=runs.unfreeze_embeddings)
    invariant.breaks(verdicts, "trainable.set")


def test_can_fail_with_an_adapter_left_merged(tmp_path, invariant):
    verdicts = runs.measure_trainable(tmp_path, reentrant=False, sabotage=runs.merge_in_place)
    invariant.breaks(verdicts, "trainable.frozen_unchanged")
