"""Gradient accumulation normalises the loss over the tokens of the whole accumulated batch."""
from __future__ import annotations

import pytest

from suite.invariants import runs

pytestmark = [pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama]
METHODS = [pytest.param("full", marks=pytest.mark.full),
           pytest.param("lora", marks=[pytest.mark.lora, pytest.mark.adapter])]


@pytest.mark.parametrize("method", METHODS)
def test_batch_and_accumulation_agree(method, tmp_path, invariant):
    invariant.holds(runs.measure_grad_accum(method, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_per_micro_batch_mean(tmp_path, invariant):
    verdicts = runs.measure_grad_accum("lora", tmp_path, trainer_cls=runs.per_micro_batch_mean_trainer())
    invariant.breaks(verdicts, "grad_accum.loss")
    invariant.breaks(verdicts, "grad_accum.weights")


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.dpo
def test_dpo_batch_and_accumulation_agree(tmp_path, invariant):
    invariant.holds(runs.measure_dpo_grad_accum(tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.dpo
def test_can_fail_dpo_with_summed_micro_batches(tmp_path, invariant):
    verdicts = runs.measure_dpo_grad_accum(tmp_path, tamper=runs.summed_micro_batches)
    invariant.breaks(verdicts, "dpo.grad_accum.loss")
    invariant.breaks(verdicts, "dpo.grad_accum.weights")


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.reward
def test_reward_batch_and_accumulation_agree(tmp_path, invariant):
    invariant.holds(runs.measure_reward_grad_accum(tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.reward
def test_can_fail_reward_with_summed_micro_batches(tmp_path, invariant):
    verdicts = runs.measure_reward_grad_accum(tmp_path, tamper=runs.summed_micro_batches)
    invariant.breaks(verdicts, "reward.grad_accum.loss")
    invariant.breaks(verdicts, "reward.grad_accum.weights")
