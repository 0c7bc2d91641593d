"""The by-definition relations of DPO, KTO and the reward model beyond their default settings, on real tiny runs
judged without baselines (tests.helpers.fault_runs): DPO's hinge, IPO and robust (label smoothing 0.1) losses,
a full fine-tune's reference (trl's copy), KTO with an undesirable weight of 1.5, a reward model with
center_rewards_coefficient; clean each relation holds, and a fault that ignores a setting fails its relation
alone. Cases set these through training.extra; no case file changes."""
from __future__ import annotations

import pytest

from tests.helpers import assert_fails_alone, check_outcomes, fault_runs

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("preference-variants")]
DPO = ("matrix:\n  - {{models: [tiny-llama], trainers: [dpo], methods: [{method}], datasets: [preference], "
       "training: {{max_steps: 8, learning_rate: 0.005{extra}}}, checks: {{loss_window: 3, loss_margin: 0.0}}}}\n")
KTO = ("matrix:\n  - {models: [tiny-llama], trainers: [kto], methods: [lora], datasets: [unpaired_preference], "
       "training: {max_steps: 8, batch_size: 16, learning_rate: 0.01, extra: {beta: 1.0, undesirable_weight: 1.5}}, "
       "checks: {loss_window: 3, loss_margin: 0.0}}\n")
REWARD = ("matrix:\n  - {models: [tiny-llama], trainers: [reward], methods: [lora], datasets: [preference], "
          "training: {max_steps: 8, extra: {center_rewards_coefficient: 0.1}}, checks: {loss_window: 3}}\n")
DPO_RELATIONS = ("dpo_logps_by_definition", "dpo_loss_by_definition", "dpo_rewards_by_definition")
# loss type -> its extra settings
LOSS_TYPES = {"hinge": "loss_type: hinge", "ipo": "loss_type: ipo", "robust": "loss_type: robust, label_smoothing: 0.1"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    out = {}
    for loss, extra in LOSS_TYPES.items():
        faults = ("", "dpo_label_smoothing_ignored") if loss == "robust" else ("",)
        matrix = DPO.format(method="lora", extra=f", extra: {{{extra}}}")
        for fault, rec in fault_runs(tmp_path_factory.mktemp(loss), matrix, faults).items():
            out[f"{loss}/{fault}"] = rec
    out["full/clean"] = fault_runs(tmp_path_factory.mktemp("full"), DPO.format(method="full", extra=""), ("",))["clean"]
    for fault, rec in fault_runs(tmp_path_factory.mktemp("kto"), KTO, ("", "kto_undesirable_ignored")).items():
        out[f"kto/{fault}"] = rec
    for fault, rec in fault_runs(tmp_path_factory.mktemp("reward"), REWARD, ("", "reward_center_ignored")).items():
        out[f"reward/{fault}"] = rec
    return out


@pytest.mark.parametrize("loss", [*LOSS_TYPES, "full"])
def test_dpo_relations_hold_for_each_loss_type_and_a_full_fine_tune(runs, loss):
    rec = runs[f"{loss}/clean"]
    checks = check_outcomes(rec)
    assert all(checks[name] for name in DPO_RELATIONS + ("dpo_starts_at_ln2",)), \
        [c["message"] for c in rec.checks if not c["passed"]]


def test_robust_dpo_with_label_smoothing_ignored_fails_the_loss_relation_alone(runs):
    rec = runs["robust/dpo_label_smoothing_ignored"]
    assert_fails_alone(rec, "dpo_label_smoothing_ignored", "dpo_loss_by_definition",
                       ("dpo_logps_by_definition", "dpo_rewards_by_definition", "dpo_starts_at_ln2"))
    assert "label smoothing" in next(c["message"] for c in rec.checks if c["name"] == "dpo_loss_by_definition")


def test_kto_with_an_undesirable_weight(runs):
    checks = check_outcomes(runs["kto/clean"])
    assert checks["kto_loss_by_definition"] and checks["kto_kl_by_definition"] and checks["kto_starts_at_reference"]
    assert_fails_alone(runs["kto/kto_undesirable_ignored"], "kto_undesirable_ignored", "kto_loss_by_definition",
                       ("kto_kl_by_definition", "kto_starts_at_reference", "reference_untouched"))


def test_a_reward_model_with_centring(runs):
    checks = check_outcomes(runs["reward/clean"])
    assert checks["reward_loss_by_definition"] and checks["reward_padding_invariance"]
    rec = runs["reward/reward_center_ignored"]
    assert_fails_alone(rec, "reward_center_ignored", "reward_loss_by_definition",
                       ("reward_padding_invariance", "score_head_saved", "reload_logits"))
    assert "centring term" in next(c["message"] for c in rec.checks if c["name"] == "reward_loss_by_definition")
