"""Gradient accumulation normalises the loss over the tokens of the whole accumulated batch."""
from __future__ import annotations

import pytest

from suite.invariants import runs

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama]
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


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.parametrize("trainer", [pytest.param("grpo", marks=pytest.mark.grpo),
                                     pytest.param("rloo", marks=pytest.mark.rloo)])
def test_online_batch_and_accumulation_agree(tmp_path, invariant, trainer):
    invariant.holds(runs.measure_online_grad_accum(trainer, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.parametrize("trainer", [pytest.param("grpo", marks=pytest.mark.grpo),
                                     pytest.param("rloo", marks=pytest.mark.rloo)])
def test_can_fail_online_with_a_micro_batch_counted_twice(tmp_path, invariant, trainer):
    """(A scale of the whole accumulated loss, as the other trainers' break, moves no weight here: Adam and the
    clipping of the larger gradient norm undo it over 3 steps.)"""
    verdicts = runs.measure_online_grad_accum(trainer, tmp_path, tamper=runs.first_micro_batch_twice)
    if trainer == "grpo":  # RLOO's loss relation does not exist (runs.measure_online_grad_accum)
        invariant.breaks(verdicts, "grpo.grad_accum.loss")
    invariant.breaks(verdicts, f"{trainer}.grad_accum.weights")
