"""Resuming from a checkpoint continues on the trajectory of an uninterrupted run: in this process (N steps,
then N more), and in a new process from the checkpoint folder only, stopped mid-way through the second of
three epochs of a shuffling sampler, with gradient accumulation, for SFT (full, LoRA, QLoRA), the plain
Trainer with peft, DPO and GRPO (suite/invariants/resume.py; docs/checks.md has the measured values)."""
from __future__ import annotations

import pytest

from suite.invariants import resume

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama]
METHODS = [pytest.param("full", marks=pytest.mark.full),
           pytest.param("lora", marks=[pytest.mark.lora, pytest.mark.adapter])]
ADAPTER = [pytest.mark.lora, pytest.mark.adapter]
ELSEWHERE = [pytest.param("sft-lora", marks=[pytest.mark.sft, pytest.mark.grad_accum, *ADAPTER]),
             pytest.param("sft-full", marks=[pytest.mark.sft, pytest.mark.grad_accum, pytest.mark.full]),
             pytest.param("sft-qlora", marks=[pytest.mark.sft, pytest.mark.grad_accum, pytest.mark.qlora,
                                              pytest.mark.adapter]),
             pytest.param("plain-lora", marks=[pytest.mark.hf_trainer, pytest.mark.grad_accum, *ADAPTER]),
             pytest.param("dpo-lora", marks=[pytest.mark.dpo, pytest.mark.grad_accum, *ADAPTER]),
             pytest.param("grpo-lora", marks=[pytest.mark.grpo, *ADAPTER])]


@pytest.mark.parametrize("method", METHODS)
def test_resume_matches_straight_run(method, tmp_path, invariant):
    invariant.holds(resume.measure_resume(method, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_without_optimizer_state(tmp_path, invariant):
    verdicts = resume.measure_resume("lora", tmp_path, tamper=resume.drop_optimizer_state)
    invariant.breaks(verdicts, "resume.weights")
    invariant.breaks(verdicts, "resume.loss")


def test_every_setup_is_tested():
    assert sorted(p.values[0] for p in ELSEWHERE) == sorted(resume.SETUPS)


@pytest.mark.parametrize("setup", ELSEWHERE)
def test_resumed_in_a_new_process_matches_straight_run(setup, tmp_path, invariant):
    invariant.holds(resume.measure_resume_elsewhere(setup, tmp_path))


@pytest.mark.sft
@pytest.mark.grad_accum
@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_sampler_restarted_at_epoch_0(tmp_path, invariant):
    verdicts = resume.measure_resume_elsewhere("sft-lora", tmp_path, fault="sampler_epoch_0")
    invariant.breaks(verdicts, "resume.order")
    invariant.breaks(verdicts, "resume.loss")


@pytest.mark.sft
@pytest.mark.grad_accum
@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_scheduler_state_lost(tmp_path, invariant):
    verdicts = resume.measure_resume_elsewhere("sft-lora", tmp_path, tamper=resume.drop_scheduler_state)
    invariant.breaks(verdicts, "resume.lr")
    invariant.breaks(verdicts, "resume.weights")


@pytest.mark.grpo
@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_grpo_random_state_not_restored(tmp_path, invariant):
    verdicts = resume.measure_resume_elsewhere("grpo-lora", tmp_path, tamper=resume.drop_rng_state)
    invariant.breaks(verdicts, "resume.samples")
