"""Every load route (suite/train/routes.py) on real tiny training: a clean run passes every route that
applies and says why the others do not; each route's known fault fails that route alone; a fault in
the saved files fails every route that reads them; the routes are declared per head (a sequence
classifier's score head travels with its adapter)."""
from __future__ import annotations

import pytest

from suite.cases import load_cases
from suite.judge.checks import ReloadMatches, RouteMatches
from suite.records import results
from suite.records.record import CaseRecord
from suite.run.session import RunSession
from suite.train import inject, routes
from tests.helpers import write_cases

pytestmark = pytest.mark.xdist_group("route-faults")
CASES = ("matrix:\n"
         "  - {models: [tiny-llama], methods: [lora, qlora], training: {max_steps: 10}, checks: {loss_window: 3, "
         "loss_margin: 0.01}}\n"
         "  - {models: [tiny-llama], methods: [lora], features: [modules_to_save], datasets: [chatml], "
         "training: {max_steps: 10}, checks: {loss_window: 3, loss_margin: 0.01}}\n")
ADAPTER_ROUTES = ("peft_model", "transformers_adapter_dir", "load_adapter", "auto_peft", "merged")
# fault -> (the case it is aimed at, the routes it must fail)
FAULTS = {
    "route_merge": ("tiny-llama/lora/base", {"merged"}),
    "route_modules_to_save": ("tiny-llama/lora/modules_to_save/chatml", {"load_adapter"}),
    "route_quantized_save": ("tiny-llama/qlora/base", {"quantized_base"}),
    "drop_lora_b": ("tiny-llama/lora/base", set(ADAPTER_ROUTES)),
}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[tuple[str, str], CaseRecord]:
    tmp = tmp_path_factory.mktemp("routes")
    cases = {c.id: c for c in load_cases(write_cases(tmp / "cases", CASES))}
    session = RunSession(tmp / "results", "routes", baselines=None)
    out = {}
    runs = [("", case_id) for case_id in cases] + [(fault, case_id) for fault, (case_id, _) in FAULTS.items()]
    for fault, case_id in runs:
        session.child_env = {inject.ENV: fault}
        result = session.run_case(cases[case_id])
        out[(fault, case_id)] = results.read_record(result.record_path)
    session.finish()
    return out


def route_checks(record: CaseRecord) -> dict[str, bool]:
    return {c["name"].removeprefix("reload/"): c["passed"] for c in record.checks if c["name"].startswith("reload/")}


@pytest.mark.slow
def test_a_clean_run_passes_every_route_that_applies_and_says_why_the_others_do_not(records):
    expected = {"tiny-llama/lora/base": set(ADAPTER_ROUTES),
                "tiny-llama/qlora/base": set(ADAPTER_ROUTES) | {"quantized_base"},
                "tiny-llama/lora/modules_to_save/chatml": set(ADAPTER_ROUTES) - {"transformers_adapter_dir"}}
    for case_id, routes_run in expected.items():
        rec = records[("", case_id)]
        assert rec.status == "passed", rec.reason
        assert route_checks(rec) == dict.fromkeys(routes_run, True), case_id
        skipped = {r["route"]: r["reason"] for r in rec.reload["routes"] if r["status"] == "not_applicable"}
        assert set(skipped) == {r.name for r in routes.ROUTES["causal_lm"]} - routes_run
        assert all(skipped.values())
        assert rec.metrics["reload/peft_model"]["value"] == rec.reload["max_abs_logit_diff"]
        assert {c["name"]: c["passed"] for c in rec.checks}["saved_tokenizer"]
        generated = [r for r in rec.reload["routes"] if r.get("generated") is not None]
        assert generated and all(r["generation_matches"] for r in generated if r["max_abs_logit_diff"] == 0)


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_fails_exactly_the_routes_it_is_aimed_at(records, fault):
    case_id, failing = FAULTS[fault]
    rec = records[(fault, case_id)]
    assert rec.resolved["injected"] == {fault: 1.0}
    checks = route_checks(rec)
    assert {name for name, ok in checks.items() if not ok} == failing, [
        c["message"] for c in rec.checks if not c["passed"]]


@pytest.mark.slow
def test_the_record_says_which_routes_failed(records):
    rec = records[("drop_lora_b", "tiny-llama/lora/base")]
    failed = {c["name"] for c in rec.checks if not c["passed"]}
    assert {f"reload/{r}" for r in ADAPTER_ROUTES} <= failed and "reload_logits" in failed
    assert any("lora_B" in m for m in rec.reason.split("; "))


def outcome(**kw) -> dict:
    return {"route": "peft_model", "loader": "PeftModel.from_pretrained(base, dir)", "status": "checked",
            "max_abs_logit_diff": 0.0, **kw}


CHECK = RouteMatches(ReloadMatches(1e-4), {"save_load.merge": 1e-4})


@pytest.mark.parametrize("bad, words", [
    (dict(status="error", reason="RuntimeError: size mismatch"), "failed: RuntimeError"),
    (dict(max_abs_logit_diff=0.5), "logits 0.5"),
    (dict(generated=[1, 2], generation_matches=False), "other greedy ids"),
    (dict(adapter_mismatch=["x.lora_B.weight: missing"]), "not loaded as saved"),
    (dict(inference=True, trainable_params=64), "promises an inference model"),
    (dict(generation_config="differs from the tokenizer: eos_token_id 3 (tokenizer: 2)"), "generation config"),
])
def test_each_route_problem_fails_the_check_and_names_itself(bad, words):
    assert CHECK.evaluate("c", outcome()).passed
    result = CHECK.evaluate("c", outcome(**bad))
    assert not result.passed and words in result.message, result.message


def test_a_merge_gets_the_merge_relations_tolerance_and_other_ids_within_the_bound_are_said():
    merged = outcome(route="merged", max_abs_logit_diff=1.5e-4, bound_relation="save_load.merge",
                     generated=[1], generation_matches=False)
    result = CHECK.evaluate("c", merged)
    assert result.passed and result.bound == pytest.approx(2e-4) and "greedy ids differ" in result.message


@pytest.mark.slow
def test_a_sequence_classifier_carries_its_score_head_through_its_routes(tmp_path):
    """The same mechanism for a reward model's head: LoRA plus the score head (modules_to_save)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from suite.invariants import harness as h
    from suite.train import models

    torch.manual_seed(0)
    base_dir = models.materialise_tiny("llama")
    tokenizer = models.load_tokenizer(str(base_dir))
    base = AutoModelForSequenceClassification.from_pretrained(str(base_dir), num_labels=1, dtype=torch.float32)
    base.config.pad_token_id = tokenizer.pad_token_id
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="SEQ_CLS"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:  # what training would have moved: lora_B and the score head's copy
                p.add_(torch.randn_like(p) * 0.05)
    trained = routes.probe(model, tokenizer, "cpu", "seq_cls")
    saved = tmp_path / "adapter"
    model.save_pretrained(str(saved))
    tokenizer.save_pretrained(str(saved))
    assert any("score" in k for k in __import__("safetensors.torch", fromlist=["x"]).load_file(
        str(saved / "adapter_model.safetensors")))
    case = h.tiny_case("lora")
    load_kwargs = {"dtype": torch.float32, "num_labels": 1, "pad_token_id": tokenizer.pad_token_id}
    ctx = routes.Context(case, str(base_dir), saved, load_kwargs, "cpu", trained, None, tmp_path / "scratch",
                         head="seq_cls")
    out = {o.route: o for o in routes.check_routes(ctx, routes.ROUTES["seq_cls"])}
    assert {r for r, o in out.items() if o.status == "checked"} == {"peft_model", "auto_peft", "merged"}
    for name in ("peft_model", "auto_peft"):
        assert out[name].max_abs_logit_diff == 0.0 and out[name].adapter_mismatch == [], out[name]
    assert out["merged"].max_abs_logit_diff < 1e-4
    assert out["auto_peft"].loader == "AutoPeftModelForSequenceClassification.from_pretrained(dir)"  # the user's call
    # a score head left behind is seen: drop it from the saved adapter
    from safetensors.torch import load_file, save_file

    path = saved / "adapter_model.safetensors"
    save_file({k: v for k, v in load_file(str(path)).items() if "score" not in k}, str(path), metadata={"format": "pt"})
    again = {o.route: o for o in routes.check_routes(ctx, routes.ROUTES["seq_cls"])}
    dropped = again["peft_model"]  # peft 0.21 refuses the adapter (a KeyError naming the score head)
    assert ("score" in dropped.reason) if dropped.status == "error" else dropped.max_abs_logit_diff > 1e-3, dropped


def test_routes_through_transformers_apply_whatever_peft_is_installed(monkeypatch, tmp_path):
    """Where transformers' PEFT integration refuses the installed peft (its MIN_PEFT_VERSION: the release sweep's
    peft 0.19.1 with transformers 5.23.0, the canary's 5.25 asking 0.22.0), load_adapter and
    from_pretrained(adapter_dir) still apply and fail with its ValueError (tests/train/test_raises.py): a user's
    load_adapter fails on that pair too, a finding, never 'not applicable'."""
    from suite.train import compat

    case = {c.id: c for c in load_cases()}["tiny-llama/lora/base"]
    ctx = routes.Context(case, "base", tmp_path, {}, "cpu", None, None, tmp_path / "scratch")
    through = [r for r in routes.ROUTES["causal_lm"] if r.name in routes.INTEGRATION_ROUTES]
    assert {r.name for r in through} == set(routes.INTEGRATION_ROUTES)
    monkeypatch.setattr(compat, "package_version", lambda name: "0.1.0" if name == "peft" else "5.23.0")
    assert all(r.not_applicable(ctx) is None for r in through)
