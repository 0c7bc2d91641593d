"""A run end to end through RunSession: real tiny training, and every way a case can end."""
from __future__ import annotations

import json

import pytest

from suite import results
from suite.cases import load_cases
from suite.session import RunSession
from tests.helpers import write_cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    d = write_cases(tmp_path_factory.mktemp("cases"), """
        matrix:
          - {models: [tiny-llama], methods: [lora, full]}
          - {models: [tiny-qwen2], methods: [lora], training: {extra: {no_such_sft_field: 1}}}
          - {models: [big], methods: [qlora]}
    """)
    return {c.id: c for c in load_cases(d)}


def test_a_passing_adapter_case_leaves_a_valid_record_and_checkpoint(tmp_path, cases):
    session = RunSession(tmp_path, "run1")
    res = session.run_case(cases["tiny-llama/lora/base"])
    assert res.status == "passed", res.failure_messages
    rec = results.read_record(res.record_path)
    assert rec["case_id"] == "tiny-llama/lora/base" and rec["fingerprint"] == cases["tiny-llama/lora/base"].fingerprint
    assert {c["name"] for c in rec["checks"]} == {"loss_decreases", "adapter_only", "checkpoint_size", "reload_logits"}
    assert all(c["passed"] for c in rec["checks"])
    assert rec["checkpoint"]["weight_files"] == ["adapter_model.safetensors"] and rec["checkpoint"]["kept"]
    assert rec["params"]["trainable"] < rec["params"]["total"]
    assert rec["metrics"]["tokens_per_s"]["better"] == "higher" and rec["metrics"]["tokens_per_s"]["value"] > 0
    assert len(rec["loss_curve"]) == 30 and rec["environment"]["packages"]["trl"]
    assert rec["resolved"]["args"]["gradient_checkpointing"] is False  # trl's default is True; the case said no
    session.finish()
    manifest = results.read_manifest(tmp_path / "run1")
    assert manifest["counts"] == {"passed": 1} and manifest["finished_at"]
    assert manifest["records"] == {"tiny-llama/lora/base": ["tiny-llama__lora__base.json"]}


def test_a_full_fine_tune_checkpoint_holds_the_whole_model(tmp_path, cases):
    res = RunSession(tmp_path, "run2").run_case(cases["tiny-llama/full/base"])
    assert res.status == "passed", res.failure_messages
    rec = res.record
    assert rec["checkpoint"]["tensor_bytes"] == rec["params"]["state_dict_bytes"]
    assert rec["params"]["trainable"] == rec["params"]["total"]


def test_an_exception_in_the_child_is_an_error_record_and_the_next_case_runs(tmp_path, cases):
    session = RunSession(tmp_path, "run3")
    res = session.run_case(cases["tiny-qwen2/lora/base"])
    assert res.status == "error"
    failure = res.record["failure"]
    assert failure["kind"] == "exception" and "no_such_sft_field not a field of the installed trl" in failure["message"]
    assert "Traceback" in failure["stderr_tail"]
    assert any("tiny-qwen2/lora/base: exception" in m for m in res.failure_messages)
    assert session.run_case(cases["tiny-llama/lora/base"]).status == "passed"


def test_a_timeout_is_recorded(tmp_path, cases):
    res = RunSession(tmp_path, "run4", timeout_s=0.5).run_case(cases["tiny-llama/lora/base"])
    assert res.status == "error" and res.record["failure"]["kind"] == "timeout"
    assert json.loads(res.record_path.read_text())["status"] == "error"


def test_a_case_this_machine_cannot_run_is_skipped_with_the_reason(tmp_path, cases, monkeypatch):
    monkeypatch.delenv("FTSUITE_TEST_BIG", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    res = RunSession(tmp_path, "run5").run_case(cases["big/qlora/base"])
    assert res.status == "skipped"
    assert "set FTSUITE_TEST_BIG" in res.reason and "weights of org/big-7b not found" in res.reason


def test_records_of_a_rerun_into_the_same_run_id_are_kept(tmp_path, cases):
    case = cases["tiny-llama/lora/base"]
    first = RunSession(tmp_path, "same", timeout_s=0.5).run_case(case)
    second = RunSession(tmp_path, "same", timeout_s=0.5).run_case(case)
    assert first.record_path != second.record_path and first.record_path.exists()
    manifest = results.read_manifest(tmp_path / "same")
    assert manifest["records"][case.id] == [first.record_path.name, second.record_path.name]
