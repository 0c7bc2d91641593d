"""The DPO checks, on real tiny DPO training (trl's DPOTrainer, ref_model=None, a LoRA adapter): a
clean run passes them, and each known fault makes exactly its check fail — a reference whose base
weights moved, a policy that is not its reference at the first step (the loss does not start at
ln 2), an adapter checkpoint that also saved the base."""
from __future__ import annotations

import math

import pytest

from suite.judge.checks import ReferenceUntouched, RewardsRise, StartsAtLn2
from suite.matrix.load import load_cases
from suite.run.session import RunSession
from suite.train import inject
from tests.helpers import write_cases

pytestmark = pytest.mark.xdist_group("dpo-faults")
DPO_LORA = ("matrix:\n  - {models: [tiny-llama], trainers: [dpo], methods: [lora], datasets: [preference], "
            "training: {max_steps: 12, learning_rate: 0.005}, checks: {loss_window: 3, loss_margin: 0.01}}\n")
FAULTS = ("", "reference", "adapter_init", "save_base")


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("dpo")
    case = load_cases(write_cases(tmp / "cases", DPO_LORA))[0]
    session = RunSession(tmp / "results", "dpo", baselines=None)
    out = {}
    for fault in FAULTS:
        session.child_env = {inject.ENV: fault}
        out[fault or "clean"] = session.run_case(case).record
    session.finish()
    return out


def _checks(record: dict) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in record["checks"]}


def test_a_clean_dpo_run_passes_every_check(records):
    rec = records["clean"]
    assert rec["status"] == "passed", rec["reason"]
    checks = _checks(rec)
    assert checks["dpo_starts_at_ln2"] and checks["dpo_rewards_rise"] and checks["reference_untouched"]
    assert checks["adapter_only"] and checks["checkpoint_size"] and checks["reload_logits"]
    assert abs(rec["loss_curve"][0]["loss"] - math.log(2)) < 1e-6
    assert rec["reference"] == {"kind": "the disabled adapter", "max_abs_logit_diff": 0.0}
    assert rec["metrics"]["reward_accuracy_final"]["value"] > 0.5


@pytest.mark.parametrize("fault, check", [("reference", "reference_untouched"),
                                          ("adapter_init", "dpo_starts_at_ln2"),
                                          ("save_base", "adapter_only")])
def test_each_fault_fails_its_check(records, fault, check):
    rec = records[fault]
    assert rec["resolved"]["injected"] == {fault: 1.0}
    assert rec["status"] == "failed"
    assert not _checks(rec)[check], next(c["message"] for c in rec["checks"] if c["name"] == check)


def test_a_shifted_reference_leaves_the_start_at_ln2(records):
    # the policy shares the shifted base, so only the reference check can see it
    assert _checks(records["reference"])["dpo_starts_at_ln2"]
    assert records["reference"]["reference"]["max_abs_logit_diff"] > 0


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
