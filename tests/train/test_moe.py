"""The mixture-of-experts checks, on real tiny QLoRA training of tiny-mixtral (the fused experts adapted
through peft's target_parameters): a clean run passes them, and each known fault makes its check fail
while the checks it cannot touch pass: an adapter file without the experts' LoRA tensors, a 4-bit base
that left the attention's o_proj unquantized."""
from __future__ import annotations

import pytest

from suite.cases import load_cases
from suite.judge.checkpoint import Inventory, Tensor
from suite.judge.experts import ExpertAdapters, QuantizedWhere
from suite.run.session import RunSession
from suite.train import inject
from suite.train.payload import Params, Quantized
from tests.helpers import write_cases

pytestmark = pytest.mark.xdist_group("moe-faults")
MOE_QLORA = ("models:\n  tiny-mixtral: {size: tiny, arch: mixtral}\n"
             "matrix:\n  - {models: [tiny-mixtral], methods: [qlora], training: {max_steps: 10}, "
             "lora: {target_modules: [q_proj, k_proj, v_proj, o_proj], "
             "target_parameters: [mlp.experts.gate_up_proj, mlp.experts.down_proj]}, "
             "checks: {loss_window: 3, loss_margin: 0.0, "
             "unquantized: [mlp.gate.weight, mlp.experts.gate_up_proj, mlp.experts.down_proj]}}\n")
FAULTS = ("", "drop_expert_lora", "quant_skip")
UNQUANTIZED = ("mlp.gate.weight", "mlp.experts.gate_up_proj", "mlp.experts.down_proj")


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("moe")
    case = load_cases(write_cases(tmp / "cases", MOE_QLORA))[0]
    session = RunSession(tmp / "results", "moe", baselines=None)
    out = {}
    for fault in FAULTS:
        session.child_env = {inject.ENV: fault}
        record = session.run_case(case).record
        out[fault or "clean"] = record.to_dict() if hasattr(record, "to_dict") else record
    session.finish()
    return out


def _checks(record: dict) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in record["checks"]}


@pytest.mark.slow
def test_a_clean_moe_qlora_run_passes_every_check(records):
    rec = records["clean"]
    checks = _checks(rec)
    assert checks["expert_lora"] and checks["quantized_base"], [c["message"] for c in rec["checks"]]
    assert checks["adapter_only"] and checks["checkpoint_size"] and checks["reload_logits"]
    assert set(rec["params"]["quantized"]["unquantized"]) == set(UNQUANTIZED)
    assert all(e["aux_loss"] > 0 for e in rec["loss_curve"])  # the router's loss is on and logged


FAULT_CHECKS = {
    "drop_expert_lora": ("expert_lora", ("quantized_base", "loss_decreases")),
    "quant_skip": ("quantized_base", ("expert_lora", "adapter_only", "checkpoint_size")),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULT_CHECKS)
def test_each_fault_fails_its_check_and_leaves_the_others(records, fault):
    rec = records[fault]
    check, untouched = FAULT_CHECKS[fault]
    assert rec["resolved"]["injected"] == {fault: 1.0}
    assert rec["status"] == "failed"
    checks = _checks(rec)
    assert not checks[check], next(c["message"] for c in rec["checks"] if c["name"] == check)
    assert all(checks[name] for name in untouched), [c["message"] for c in rec["checks"] if not c["passed"]]


def _wrapped(layer: int, name: str, shape: list[int], r: int = 8) -> dict:
    path = f"base_model.model.model.layers.{layer}.mlp.experts"
    e, a, b = shape
    in_f, out_f = (b, a)
    return {"parameter": f"model.layers.{layer}.mlp.experts.{name}", "shape": shape,
            "lora_A": f"{path}.{name}.lora_A.weight", "lora_A_shape": [r * e, in_f],
            "lora_B": f"{path}.{name}.lora_B.weight", "lora_B_shape": [out_f, r * e]}


def test_the_checks_on_crafted_values():
    wrapped = [_wrapped(i, "down_proj", [4, 64, 128]) for i in range(2)]
    params = Params(1, 2, 4, ["float32"], 4, parameter_adapters=wrapped)
    inv = Inventory("x", tensors=[Tensor(w[p], "F32", w[f"{p}_shape"], 4) for w in wrapped for p in ("lora_A", "lora_B")])
    assert ExpertAdapters(("mlp.experts.down_proj",), 2, 8).evaluate("c", inv, params).passed
    assert not ExpertAdapters(("mlp.experts.down_proj",), 3, 8).evaluate("c", inv, params).passed  # a layer short
    assert not ExpertAdapters(("mlp.experts.down_proj",), 2, 4).evaluate("c", inv, params).passed  # another rank
    short = Inventory("x", tensors=inv.tensors[1:])
    assert "no base_model" in ExpertAdapters(("mlp.experts.down_proj",), 2, 8).evaluate("c", short, params).message
    q = Quantized(100, 50, 2, 1, 4.16, unquantized={"mlp.experts.down_proj": 300})
    ok = QuantizedWhere(("mlp.experts.down_proj",)).evaluate("c", q)
    assert ok.passed and "25.0% of the base's weights" in ok.message
    assert not QuantizedWhere(()).evaluate("c", q).passed
    assert not QuantizedWhere(("mlp.experts.down_proj", "mlp.gate.weight")).evaluate("c", q).passed


@pytest.mark.slow
def test_a_mixture_of_experts_generates_the_same_ids_without_its_router_logits(tmp_path):
    """The generation probe turns the router's logits off (transformers 5.0 raised computing their loss during
    cached generation, docs/floors.md): the ids are those of a generation with them on, and a model without
    them gets no such argument (a dense model's forward would refuse it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from suite.train import models, probes

    for arch, router in (("mixtral", True), ("llama", False)):
        path = models.materialise_tiny(arch, root=tmp_path)
        model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
        assert bool(getattr(model.config, "output_router_logits", False)) is router
        enc = tok(probes.PROBE_TEXTS[:1], return_tensors="pt")
        with torch.no_grad():
            plain = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=8,
                                   min_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        assert probes.generate(model, tok, "cpu", 8) == plain[0, enc["input_ids"].shape[1]:].tolist(), arch
