"""The KTO checks, on real tiny KTO training (trl's KTOTrainer, ref_model=None, a LoRA adapter): a
clean run passes them, and each known fault makes its check fail while the checks it cannot touch
pass — a reference whose base weights moved, a policy that is not its reference at the first step
(implicit rewards and KL estimate not 0), an optimizer that updates nothing (the desirable and undesirable
rewards stay together)."""
from __future__ import annotations

import pytest

from suite.train.backends.kto.checks import KTORewardsSeparate, KTOStartsAtReference
from tests.helpers import assert_fails_alone, check_outcomes

pytestmark = pytest.mark.xdist_group("kto-faults")
MATRIX = ("matrix:\n  - {models: [tiny-llama], trainers: [kto], methods: [lora], datasets: [unpaired_preference], "
            "training: {max_steps: 40, batch_size: 16, learning_rate: 0.01, extra: {beta: 1.0}}, "
            "checks: {loss_window: 5, loss_margin: 0.0}}\n")
FAULTS = ("", "reference", "adapter_init", "no_update", "kto_kl_matched", "kto_kl_unclamped")


@pytest.mark.slow
def test_a_clean_kto_run_passes_every_check(records):
    rec = records["clean"]
    assert rec.status == "passed", rec.reason
    checks = check_outcomes(rec)
    assert checks["kto_starts_at_reference"] and checks["kto_rewards_separate"] and checks["reference_untouched"]
    assert checks["adapter_only"] and checks["checkpoint_size"] and checks["reload_logits"]
    first = rec.loss_curve[0]
    assert (first["loss"], first["kl"]) == (0.5, 0.0)
    assert (rec.reference["kind"], rec.reference["max_abs_logit_diff"]) == ("the disabled adapter", 0.0)
    assert rec.metrics["kto_reward_margin_final"]["value"] > 0
    assert checks["kto_kl_by_definition"] and checks["kto_loss_by_definition"]


# fault -> (the check it must fail, the checks it cannot touch)
FAULT_CHECKS = {
    "reference": ("reference_untouched", ("kto_starts_at_reference", "adapter_only", "checkpoint_size")),
    "adapter_init": ("kto_starts_at_reference", ("reference_untouched", "adapter_only", "reload_logits")),
    "no_update": ("kto_rewards_separate", ("kto_starts_at_reference", "reference_untouched", "adapter_only",
                                             "reload_logits")),
    # the by-definition relations (kto/relations.py)
    "kto_kl_matched": ("kto_kl_by_definition", ("kto_loss_by_definition", "kto_starts_at_reference",
                                                "reference_untouched", "reload_logits", "kto_rewards_separate")),
    "kto_kl_unclamped": ("kto_kl_by_definition", ("kto_loss_by_definition", "kto_starts_at_reference",
                                                  "reference_untouched", "reload_logits")),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULT_CHECKS)
def test_each_fault_fails_its_check_and_leaves_the_others(records, fault):
    assert_fails_alone(records[fault], fault, *FAULT_CHECKS[fault])


def test_the_checks_on_crafted_values():
    assert KTOStartsAtReference(1e-4).evaluate("c", [{"loss": 0.5, "kl": 0.0}]).passed
    bad = KTOStartsAtReference(1e-4).evaluate("c", [{"loss": 0.5, "kl": 0.01}])
    assert not bad.passed and "not its reference at the start" in bad.message
    assert not KTOStartsAtReference(1e-4).evaluate("c", [{"loss": 0.5}]).passed
    moved = KTOStartsAtReference(1e-4).evaluate("c", [{"loss": 0.5, "kl": 0.0, "rewards/chosen": 0.02}])
    assert not moved.passed and "rewards/chosen 0.02" in moved.message
    rising = [{"rewards/chosen": 0.1 * i, "rewards/rejected": -0.1 * i, "rewards/margins": 0.2 * i} for i in range(10)]
    assert KTORewardsSeparate(3).evaluate("c", rising).passed
    flipped = [{"rewards/chosen": -0.1 * i, "rewards/rejected": 0.1 * i, "rewards/margins": -0.2 * i} for i in range(10)]
    assert not KTORewardsSeparate(3).evaluate("c", flipped).passed
    assert "logged 0 times" in KTORewardsSeparate(3).evaluate("c", [{"loss": 1.0}] * 10).message
