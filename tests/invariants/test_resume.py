"""Resuming from a checkpoint continues on the trajectory of an uninterrupted run: in this process (N steps,
then N more), and in a new process from the checkpoint folder only, stopped mid-way through the second of
three epochs of a shuffling sampler, with gradient accumulation, for SFT (full, LoRA, QLoRA), the plain
Trainer with peft, DPO and GRPO (suite/invariants/resume.py; docs/checks.md has the measured values)."""
from __future__ import annotations

import pytest

from suite.invariants import resume
from suite.invariants.relations import RELATIONS, NotApplicable

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama]
METHODS = [pytest.param("full", marks=pytest.mark.full),
           pytest.param("lora", marks=[pytest.mark.lora, pytest.mark.adapter])]
ADAPTER = [pytest.mark.lora, pytest.mark.adapter]
HOLDING = [pytest.param("sft-lora", marks=[pytest.mark.sft, pytest.mark.grad_accum, *ADAPTER]),
           pytest.param("sft-full", marks=[pytest.mark.sft, pytest.mark.grad_accum, pytest.mark.full]),
           pytest.param("plain-lora", marks=[pytest.mark.hf_trainer, pytest.mark.grad_accum, *ADAPTER]),
           pytest.param("dpo-lora", marks=[pytest.mark.dpo, pytest.mark.grad_accum, *ADAPTER]),
           pytest.param("grpo-lora", marks=[pytest.mark.grpo, *ADAPTER])]
KNOWN = ("sft-qlora", "grpo-lora-epoch2")  # each with a strict xfail on its owner's relations, below


def _measured_once(name: str, folder) -> dict:
    """A setup's verdicts by relation, for a module-scoped fixture: NotApplicable raised in a fixture is an error,
    not the skip the invariants' hook makes of it in a test (tests/invariants/conftest.py), so it skips here."""
    try:
        return {v.relation.name: v for v in resume.measure_resume_elsewhere(name, folder)}
    except NotApplicable as exc:
        pytest.skip(f"not applicable: {exc}")


def _known_broken(name: str) -> str:
    rel = RELATIONS[name]
    return f"known broken upstream, measured {rel.known_broken.where_measured()}: {rel.known_broken.why}"


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
    assert sorted([*(p.values[0] for p in HOLDING), *KNOWN]) == sorted(resume.SETUPS)


@pytest.mark.parametrize("setup", HOLDING)
def test_resumed_in_a_new_process_matches_straight_run(setup, tmp_path, invariant):
    invariant.holds(resume.measure_resume_elsewhere(setup, tmp_path))


@pytest.fixture(scope="module")
def qlora_verdicts(tmp_path_factory):
    return _measured_once("sft-qlora", tmp_path_factory.mktemp("qlora"))


@pytest.mark.sft
@pytest.mark.qlora
@pytest.mark.adapter
def test_qlora_resumed_keeps_its_schedule_and_data_order(qlora_verdicts, invariant):
    invariant.holds([qlora_verdicts["resume.lr"], qlora_verdicts["resume.order"]])


@pytest.mark.sft
@pytest.mark.qlora
@pytest.mark.adapter
def test_qlora_resumed_in_a_new_process(qlora_verdicts, invariant, request):
    """Known broken where its cause shows, the adapter resumed in another dtype than it trained in (the control
    stack); where it resumes in its own dtype (the floor releases: all three measured 0) the relations hold."""
    if not qlora_verdicts["qlora.resume.dtypes"].passed:
        request.applymarker(pytest.mark.xfail(strict=True, reason=_known_broken("qlora.resume.dtypes")))
    invariant.holds([qlora_verdicts[f"qlora.resume.{q}"] for q in ("dtypes", "loss", "weights")])


@pytest.fixture(scope="module")
def grpo_later_epoch_verdicts(tmp_path_factory):
    return _measured_once("grpo-lora-epoch2", tmp_path_factory.mktemp("grpo-epoch2"))


@pytest.mark.grpo
@pytest.mark.lora
@pytest.mark.adapter
def test_grpo_resumed_in_a_later_epoch_keeps_its_schedule(grpo_later_epoch_verdicts, invariant):
    """What holds there (the losses, weights and samples follow the prompts, and are not judged)."""
    invariant.holds([grpo_later_epoch_verdicts["resume.lr"], grpo_later_epoch_verdicts["resume.dtypes"]])


@pytest.mark.grpo
@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.xfail(strict=True, reason=_known_broken("grpo.resume.order"))
def test_grpo_resumed_in_a_later_epoch(grpo_later_epoch_verdicts, invariant):
    invariant.holds(grpo_later_epoch_verdicts["grpo.resume.order"])


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
