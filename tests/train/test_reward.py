"""The reward-model checks, on real tiny reward modelling (trl's RewardTrainer, a one-output sequence
classifier with a LoRA adapter, peft's SEQ_CLS task): a clean run passes them, and each known fault makes
its check fail while the checks it cannot touch pass — an optimizer that updates nothing (the pairwise
accuracy and margin stay where they started), a saved adapter without its score head (a reload would
score with a new random head)."""
from __future__ import annotations

import pytest

from suite.judge.checkpoint import Inventory, Tensor
from suite.train.backends.reward.checks import PairwiseRise, ScoreHeadSaved
from tests.helpers import assert_fails_alone, check_outcomes

pytestmark = pytest.mark.xdist_group("reward-faults")
MATRIX = ("matrix:\n  - {models: [tiny-llama], trainers: [reward], methods: [lora], datasets: [preference], "
               "training: {max_steps: 20}}\n")
FAULTS = ("", "no_update", "drop_score", "reward_last_position")


@pytest.mark.slow
def test_a_clean_reward_run_passes_every_check(records):
    rec = records["clean"]
    assert rec.status == "passed", rec.reason
    checks = check_outcomes(rec)
    assert checks["reward_pairs_rise"] and checks["score_head_saved"] and checks["adapter_only"]
    assert checks["checkpoint_size"] and checks["reload_logits"]
    routes = {r["route"]: r for r in rec.reload["routes"]}
    assert {r for r, o in routes.items() if o["status"] == "checked"} == {"peft_model", "auto_peft", "merged"}
    assert rec.reload["max_abs_logit_diff"] == 0.0 and rec.reload["probe_shape"][-1] == 1
    assert rec.metrics["pairwise_accuracy_final"]["value"] > 0.5
    assert checks["reward_loss_by_definition"] and checks["reward_padding_invariance"]


# fault -> (the checks it must fail, the checks it cannot touch)
FAULT_CHECKS = {
    "no_update": (("reward_pairs_rise", "loss_decreases"), ("score_head_saved", "adapter_only", "reload_logits")),
    "drop_score": (("score_head_saved", "adapter_only", "reload_logits"), ("reward_pairs_rise", "loss_decreases")),
    # a wrong pooling position: the pair accuracy still rises, the padding invariance names it
    "reward_last_position": ("reward_padding_invariance", ("reward_loss_by_definition", "reward_pairs_rise",
                                                           "score_head_saved", "reload_logits", "loss_decreases")),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULT_CHECKS)
def test_each_fault_fails_its_check_and_leaves_the_others(records, fault):
    assert_fails_alone(records[fault], fault, *FAULT_CHECKS[fault])


def test_the_checks_on_crafted_values():
    rising = [{"accuracy": min(1.0, 0.5 + 0.05 * i), "margin": 0.1 * i} for i in range(10)]
    assert PairwiseRise(3).evaluate("c", rising).passed
    assert not PairwiseRise(3).evaluate("c", [{"accuracy": 0.5, "margin": 0.0}] * 10).passed
    assert "logged 0 times" in PairwiseRise(3).evaluate("c", [{"loss": 1.0}] * 10).message
    head = Inventory("d", tensors=[Tensor("base_model.model.score.weight", "F32", [1, 64], 256)])
    assert ScoreHeadSaved().evaluate("c", head).passed
    assert not ScoreHeadSaved().evaluate("c", Inventory("d", tensors=[])).passed
