"""The DPO checks, on real tiny DPO training (trl's DPOTrainer, ref_model=None, a LoRA adapter): a
clean run passes them, and each known fault makes its check fail while the checks it cannot touch
pass — a reference whose base weights moved, a policy that is not its reference at the first step (the loss does not start at
ln 2), an adapter checkpoint that also saved the base."""
from __future__ import annotations

import math

import pytest

from suite.train.backends.dpo.checks import RewardsRise, StartsAtLn2
from suite.train.backends.preference.checks import ReferenceUntouched
from tests.helpers import assert_fails_alone, check_outcomes

pytestmark = pytest.mark.xdist_group("dpo-faults")
MATRIX = ("matrix:\n  - {models: [tiny-llama], trainers: [dpo], methods: [lora], datasets: [preference], "
            "training: {max_steps: 12, learning_rate: 0.005}, checks: {loss_window: 3, loss_margin: 0.01}}\n")
FAULTS = ("", "reference", "adapter_init", "save_base", "dpo_beta_twice", "dpo_prompt_token", "dpo_rewards_unscaled")


@pytest.mark.slow
def test_a_clean_dpo_run_passes_every_check(records):
    rec = records["clean"]
    assert rec.status == "passed", rec.reason
    checks = check_outcomes(rec)
    assert checks["dpo_starts_at_ln2"] and checks["dpo_rewards_rise"] and checks["reference_untouched"]
    assert checks["adapter_only"] and checks["checkpoint_size"] and checks["reload_logits"]
    assert abs(rec.loss_curve[0]["loss"] - math.log(2)) < 1e-6
    assert (rec.reference["kind"], rec.reference["max_abs_logit_diff"]) == ("the disabled adapter", 0.0)
    assert "before and after training, same model object" in rec.reference["compared"]
    assert rec.metrics["reward_accuracy_final"]["value"] > 0.5
    assert all(checks[f"dpo_{what}_by_definition"] for what in ("logps", "loss", "rewards"))


# fault -> (the check it must fail, the checks it cannot touch). A shifted base also moves the policy away
# from a fresh load (reload_logits) and what it learns; a non-zero adapter may keep the rewards flat.
FAULT_CHECKS = {
    "reference": ("reference_untouched", ("dpo_starts_at_ln2", "adapter_only", "checkpoint_size")),
    "adapter_init": ("dpo_starts_at_ln2", ("reference_untouched", "adapter_only", "reload_logits")),
    "save_base": ("adapter_only", ("dpo_starts_at_ln2", "reference_untouched", "reload_logits", "loss_decreases")),
    # the by-definition relations (dpo/relations.py): each fault breaks its relation and none of the others; beta
    # applied twice also slows the loss's fall (loss_decreases may fail too: the run trains at beta^2)
    "dpo_beta_twice": ("dpo_loss_by_definition", ("dpo_logps_by_definition", "dpo_rewards_by_definition",
                                                  "dpo_starts_at_ln2", "reference_untouched", "reload_logits")),
    "dpo_prompt_token": ("dpo_logps_by_definition", ("dpo_loss_by_definition", "dpo_rewards_by_definition",
                                                     "dpo_starts_at_ln2", "reference_untouched", "reload_logits")),
    "dpo_rewards_unscaled": ("dpo_rewards_by_definition", ("dpo_logps_by_definition", "dpo_loss_by_definition",
                                                           "dpo_starts_at_ln2", "dpo_rewards_rise", "loss_decreases",
                                                           "reference_untouched", "reload_logits")),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULT_CHECKS)
def test_each_fault_fails_its_check_and_leaves_the_others(records, fault):
    assert_fails_alone(records[fault], fault, *FAULT_CHECKS[fault])


@pytest.mark.slow
def test_a_shifted_reference_leaves_the_start_at_ln2(records):
    # the policy shares the shifted base, so only the reference check can see it
    assert check_outcomes(records["reference"])["dpo_starts_at_ln2"]
    assert records["reference"].reference["max_abs_logit_diff"] > 0


def test_the_checks_on_crafted_values():
    assert StartsAtLn2(1e-4).evaluate("c", [math.log(2) + 5e-5]).passed
    bad = StartsAtLn2(1e-4).evaluate("c", [0.70])
    assert not bad.passed and "not its reference at the start" in bad.message
    assert not StartsAtLn2(1e-4).evaluate("c", []).passed
    rising = [{"rewards/margins": 0.01 * i, "rewards/accuracies": min(1.0, 0.1 * i)} for i in range(10)]
    assert RewardsRise(3).evaluate("c", rising).passed
    flat = [{"rewards/margins": 0.0, "rewards/accuracies": 0.5} for _ in range(10)]
    assert not RewardsRise(3).evaluate("c", flat).passed
    assert "logged 0 times" in RewardsRise(3).evaluate("c", [{"loss": 1.0}] * 10).message
    assert ReferenceUntouched(0.0).evaluate("c", "the disabled adapter", 0.0).passed
    assert not ReferenceUntouched(0.0).evaluate("c", "the disabled adapter", 1e-7).passed
