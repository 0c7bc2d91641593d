"""A mixture of experts' loss: cross-entropy plus coefficient x the router's auxiliary loss, counted once;
and gradient accumulation, where only the cross-entropy part is a mean over the whole batch's tokens."""
from __future__ import annotations

import pytest

from suite.invariants import moe, runs

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.mixtral, pytest.mark.moe]
METHODS = [pytest.param("full", marks=pytest.mark.full),
           pytest.param("lora", marks=[pytest.mark.lora, pytest.mark.adapter])]


@pytest.mark.parametrize("method", METHODS)
def test_the_aux_loss_is_counted_once(method, tmp_path, invariant):
    invariant.holds(moe.measure_aux_counted_once(method, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.parametrize("fault", ["aux_twice", "aux_dropped"])
def test_can_fail_with_the_aux_loss_twice_or_dropped(fault, tmp_path, invariant):
    invariant.breaks(moe.measure_aux_counted_once("lora", tmp_path, faults={fault: 1.0}), "moe.aux_loss.counted_once")


@pytest.mark.parametrize("method", METHODS)
def test_batch_and_accumulation_agree_on_the_cross_entropy(method, tmp_path, invariant):
    invariant.holds(moe.measure_moe_grad_accum(method, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_per_micro_batch_mean(tmp_path, invariant):
    verdicts = moe.measure_moe_grad_accum("lora", tmp_path, trainer_cls=runs.per_micro_batch_mean_trainer())
    invariant.breaks(verdicts, "moe.grad_accum.cross_entropy")
