"""Crafted changes to saving (suite/train/backends/spoil.py's SAVING_FAULTS) on real tiny runs judged without
baselines: each ends as a failed case whose named checks fail with a message saying what is wrong with the
saved files, never as an error record; the saved tokenizer is held to training's whole vocabulary."""
from __future__ import annotations

import pytest

from suite.cases import load_cases
from suite.run.session import RunSession
from suite.train import inject
from tests.helpers import assert_fails_alone, check_outcomes, failed_messages, write_cases

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("saving-faults")]
CASES = ("matrix:\n"
         "  - {models: [tiny-llama], methods: [lora, full], training: {max_steps: 10}, checks: {loss_window: 3, "
         "loss_margin: 0.01}}\n")
LORA, FULL = "tiny-llama/lora/base", "tiny-llama/full/base"
# (fault, case) -> (a check that must fail, what its message must say)
FAULTS = {
    ("save_raises", LORA): ("checkpoint", "saving the checkpoint raised OSError"),
    ("save_no_tokenizer_file", LORA): ("saved_tokenizer", "the saved tokenizer's check raised"),
    ("save_no_tokenizer_file", FULL): ("saved_tokenizer", "the saved tokenizer's check raised"),
    ("save_corrupt_adapter_config", LORA): ("reload/peft_model", "JSONDecodeError"),
    ("save_no_config", FULL): ("reload/full_model", "config.json"),
    ("save_truncated_weights", LORA): ("reload/peft_model", "SafetensorError"),
    ("save_truncated_weights", FULL): ("reload/full_model", "SafetensorError"),
    ("save_vocab_swapped", LORA): ("saved_tokenizer", "the vocabulary differs: 2 of training's"),
}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("saving")
    cases = {c.id: c for c in load_cases(write_cases(tmp / "cases", CASES))}
    session = RunSession(tmp / "results", "saving", baselines=None)
    out = {}
    for fault, case_id in [("", LORA), ("", FULL), *FAULTS]:
        session.child_env = {inject.ENV: fault}
        out[(fault, case_id)] = session.run_case(cases[case_id]).record
    session.finish()
    return out


@pytest.mark.parametrize("case_id", [LORA, FULL])
def test_a_clean_save_passes_the_saved_checks(records, case_id):
    rec = records[("", case_id)]
    assert rec.status == "passed", failed_messages(rec)
    assert check_outcomes(rec)["saved_tokenizer"]


@pytest.mark.parametrize("fault, case_id", list(FAULTS))
def test_each_crafted_change_to_saving_is_a_failed_check_with_its_message(records, fault, case_id):
    rec = records[(fault, case_id)]
    check, says = FAULTS[(fault, case_id)]
    assert rec.resolved["injected"] == {fault: 1.0}
    assert rec.status == "failed", (rec.status, rec.reason)  # never "error": the case was judged
    failed = {c["name"]: c["message"] for c in rec.checks if not c["passed"]}
    assert check in failed, failed_messages(rec)
    assert says in failed[check], failed[check]


def test_a_swapped_vocabulary_fails_the_saved_tokenizer_alone(records):
    rec = records[("save_vocab_swapped", LORA)]
    routes = tuple(name for name in check_outcomes(rec) if name.startswith("reload"))
    assert routes  # the load routes ran, and the probe texts' ids agree: only the whole vocabulary differs
    assert_fails_alone(rec, "save_vocab_swapped", "saved_tokenizer", routes)
    assert {name for name, ok in check_outcomes(rec).items() if not ok} == {"saved_tokenizer"}
    assert "tokenizes to other ids" not in failed_messages(rec)[0]
