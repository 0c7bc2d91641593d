"""LoRA dropout (feature lora_dropout, lora.dropout > 0), on real tiny SFT LoRA training: a clean run
passes the lora_dropout check (the adapter's dropout layers at the case's rate; eval-mode forwards agree,
training-mode ones differ), and each known fault fails it while the checks it cannot touch pass: dropout
layers at rate 0 (it trained without dropout), dropout on in evaluation (the reload then disagrees too)."""
from __future__ import annotations

import pytest

from suite.cases import load_cases
from suite.errors import CaseError
from suite.judge.checks import LoraDropoutActs
from tests.helpers import assert_fails_alone, check_outcomes, write_cases

pytestmark = pytest.mark.xdist_group("dropout-faults")
MATRIX = ("matrix:\n  - {models: [tiny-llama], methods: [lora], features: [lora_dropout], lora: {dropout: 0.05}, "
                "training: {max_steps: 20}, checks: {loss_window: 3, loss_margin: 0.05}}\n")
FAULTS = ("", "dropout_off", "dropout_in_eval")


@pytest.mark.slow
def test_a_clean_run_with_lora_dropout_passes(records):
    rec = records["clean"]
    assert rec.status == "passed", rec.reason
    assert check_outcomes(rec)["lora_dropout"]
    measured = rec.dropout
    assert measured["rates"] == [0.05] and measured["modules"] > 0
    assert measured["eval_repeat_diff"] == 0.0 and measured["train_pair_diff"] > 1e-4


# fault -> (what the check's message must say, the checks it cannot touch)
FAULT_CHECKS = {
    "dropout_off": ("no dropout in training", ("loss_decreases", "adapter_only", "checkpoint_size", "reload_logits")),
    "dropout_in_eval": ("dropout is on in evaluation", ("loss_decreases", "adapter_only", "checkpoint_size")),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULT_CHECKS)
def test_each_fault_fails_the_dropout_check_and_leaves_the_others(records, fault):
    rec = records[fault]
    words, untouched = FAULT_CHECKS[fault]
    assert_fails_alone(rec, fault, "lora_dropout", untouched)
    message = next(c["message"] for c in rec.checks if c["name"] == "lora_dropout")
    assert words in message, message


@pytest.mark.slow
def test_dropout_on_in_evaluation_also_fails_the_reload(records):
    """The reloaded model evaluates without dropout; the trained one, with the fault, with it."""
    assert not check_outcomes(records["dropout_in_eval"])["reload_logits"]


def test_the_check_on_crafted_values():
    good = {"rates": [0.1], "modules": 14, "eval_repeat_diff": 0.0, "train_pair_diff": 0.4}
    assert LoraDropoutActs(1e-4).evaluate("c", 0.1, good).passed
    assert "rates [0.05], not 0.1" in LoraDropoutActs(1e-4).evaluate("c", 0.1, {**good, "rates": [0.05]}).message
    assert not LoraDropoutActs(1e-4).evaluate("c", 0.1, {**good, "eval_repeat_diff": 2e-4}).passed
    assert not LoraDropoutActs(1e-4).evaluate("c", 0.1, {**good, "train_pair_diff": 1e-4}).passed
    assert "no LoRA dropout layer" in LoraDropoutActs(1e-4).evaluate("c", 0.1, None).message


@pytest.mark.parametrize("entry,words", [
    ("{models: [tiny-llama], methods: [lora], lora: {dropout: 0.05}}", "go together"),
    ("{models: [tiny-llama], methods: [lora], features: [lora_dropout]}", "go together"),
    ("{models: [tiny-llama], methods: [full], features: [lora_dropout], lora: {dropout: 0.05}}", "needs an adapter"),
])
def test_the_dropout_and_its_feature_go_together(tmp_path, entry, words):
    with pytest.raises(CaseError) as err:
        load_cases(write_cases(tmp_path, f"matrix:\n  - {entry}\n"))
    assert err.value.file.endswith("matrix.yaml") and words in err.value.message, err.value
