"""A trl trainer given the model's path and no processing_class trains as the same case given the objects
(suite/invariants/byname.py): the same losses, weights and tokenizer, and the reward model the same head."""
from __future__ import annotations

import pytest

from suite.invariants import byname

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama, pytest.mark.by_name]
# LoRA for every trainer; the reward model full as well, where its score head is the whole story (its LoRA
# twin is the strict xfail below)
TWINS = [pytest.param(t, "lora", marks=[getattr(pytest.mark, t), pytest.mark.lora, pytest.mark.adapter],
                      id=f"{t}-lora") for t in byname.TRAINERS if t != "reward"]
TWINS.append(pytest.param("reward", "full", marks=[pytest.mark.reward, pytest.mark.full], id="reward-full"))


@pytest.mark.parametrize(("trainer", "method"), TWINS)
def test_by_name_trains_as_by_object(tmp_path, invariant, trainer, method):
    invariant.holds(byname.measure_by_name(trainer, tmp_path, method=method))


@pytest.mark.reward
@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.xfail(strict=True, reason=(
    "trl's RewardTrainer calls set_seed(args.seed) and then, given a path, builds the classifier, whose new "
    "score head draws from the generator before peft draws the LoRA A matrices; given an object (built after "
    "the suite's own seeding) it re-seeds after the head: the twins' adapters start from other random values "
    "(measured: weights 0.254, losses 1.8e-3 from step 2, score head 5.3e-4 after 3 steps; step 1 equal). "
    "Each is reproducible; they are not one run (docs/cases.md#by-name)"))
def test_reward_lora_by_name_starts_its_adapter_elsewhere(tmp_path):
    # asserted here, not through the `invariant` fixture: a known difference is not a measurement of the
    # relations for upgrade-check's table (tests/invariants/conftest.py)
    failures = [v.fails() for v in byname.measure_by_name("reward", tmp_path, method="lora") if not v.passed]
    assert not failures, "\n".join(failures)


@pytest.mark.sft
@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_when_trl_loads_another_tokenizer(tmp_path, invariant):
    verdicts = byname.measure_by_name("sft", tmp_path, fault=byname.eos_fault)
    invariant.breaks(verdicts, "by_name.tokenizer")
    invariant.breaks(verdicts, "by_name.loss")
    invariant.breaks(verdicts, "by_name.weights")


@pytest.mark.reward
@pytest.mark.full
def test_can_fail_with_a_two_label_head(tmp_path, invariant):
    verdicts = byname.measure_by_name("reward", tmp_path, method="full", fault=byname.two_labels)
    invariant.breaks(verdicts, "reward.by_name.head")


@pytest.mark.reward
@pytest.mark.full
def test_can_fail_with_another_seed(tmp_path, invariant):
    verdicts = byname.measure_by_name("reward", tmp_path, method="full", seed=1)
    invariant.breaks(verdicts, "reward.by_name.head")
    invariant.breaks(verdicts, "by_name.weights")
    invariant.breaks(verdicts, "by_name.loss")
