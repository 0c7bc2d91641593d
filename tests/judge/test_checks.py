"""Every check passes on good input and fails, naming case, value and bound, on crafted bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from safetensors.numpy import save_file

from suite.judge import checkpoint
from suite.judge.checks import AdapterOnly, AttentionRan, HoldsWholeModel, LossDecreases, ReloadMatches, SizeMatches

CASE = "tiny-llama/lora/base"


def lora_tensors(n_layers: int = 2, dtype=np.float32) -> dict:
    out = {}
    for i in range(n_layers):
        out[f"base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight"] = np.zeros((8, 64), dtype)
        out[f"base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight"] = np.zeros((64, 8), dtype)
    return out


def ckpt(tmp_path, tensors: dict, name: str = "adapter_model.safetensors", extra_files=()):
    tmp_path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp_path / name))
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "training_args.bin").write_bytes(b"pickle")  # written by Trainer.save_model, not weights
    for f in extra_files:
        (tmp_path / f).write_bytes(b"x" * 10)
    return checkpoint.inventory(tmp_path)


@pytest.mark.parametrize("losses,passed", [
    ([4.0] * 5 + [3.0] * 5, True),
    ([4.0, 3.0, 4.0, 3.0, 4.0, 3.5, 3.9, 3.8, 3.7, 3.6], False),  # last-5 mean 3.70 vs bound 3.24
    ([3.0] * 5 + [4.0] * 5, False),  # rising
])
def test_loss_decreases_uses_window_means_with_margin(losses, passed):
    res = LossDecreases(window=5, margin=0.1).evaluate(CASE, losses)
    assert res.passed is passed
    assert CASE in res.message and f"{res.bound:.4f}" in res.message and f"{res.value:.4f}" in res.message


def test_last_below_first_is_not_enough():
    """A noisy curve whose last point dips below the first but whose windows did not move fails."""
    losses = [3.5, 3.9, 3.7, 3.8, 3.6, 3.7, 3.8, 3.6, 3.9, 3.4]
    assert losses[-1] < losses[0]
    assert not LossDecreases(5, 0.1).evaluate(CASE, losses).passed


def test_loss_check_refuses_nan_and_short_curves():
    res = LossDecreases(5, 0.1).evaluate(CASE, [4.0] * 5 + [float("nan")] + [1.0] * 4)
    assert not res.passed and "not finite at logged step 6" in res.message
    res = LossDecreases(5, 0.1).evaluate(CASE, [4.0, 1.0])
    assert not res.passed and "needs at least 10 logged losses, got 2" in res.message


def test_adapter_only_passes_on_a_lora_checkpoint(tmp_path):
    inv = ckpt(tmp_path, lora_tensors())
    res = AdapterOnly().evaluate(CASE, inv, trainable_tensors=4)
    assert res.passed, res.message
    assert inv.weight_files == ["adapter_model.safetensors"]


def test_adapter_only_fails_on_base_weights_in_the_adapter_file(tmp_path):
    tensors = lora_tensors()
    tensors["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"] = np.zeros((64, 64), np.float32)
    res = AdapterOnly().evaluate(CASE, ckpt(tmp_path, tensors), trainable_tensors=4)
    assert not res.passed
    assert "1 non-adapter tensors" in res.message and "base_layer.weight" in res.message
    assert "5 saved tensors but 4 trainable" in res.message


def test_adapter_only_fails_on_a_4bit_dump_and_on_extra_weight_files(tmp_path):
    tensors = lora_tensors()
    tensors["base_model.model.model.layers.0.mlp.lora_A.weight.absmax"] = np.zeros((4,), np.uint8)
    res = AdapterOnly().evaluate(CASE, ckpt(tmp_path / "a", tensors), trainable_tensors=5)
    assert not res.passed and "integer (quantized) tensors" in res.message
    res = AdapterOnly().evaluate(CASE, ckpt(tmp_path / "b", lora_tensors(), extra_files=["model.safetensors.bin"]),
                                 trainable_tensors=4)
    assert not res.passed and "weight files besides the adapter: model.safetensors.bin" in res.message


def test_adapter_only_requires_safetensors(tmp_path):
    inv = ckpt(tmp_path, lora_tensors(), name="other.safetensors", extra_files=["adapter_model.bin"])
    res = AdapterOnly().evaluate(CASE, inv, trainable_tensors=4)
    assert not res.passed and "no adapter_model.safetensors" in res.message and "adapter_model.bin" in res.message


def test_size_check_compares_tensor_bytes_with_params_times_dtype(tmp_path):
    inv = ckpt(tmp_path, lora_tensors(dtype=np.float16))
    expected_fp16 = 2 * (8 * 64 + 64 * 8) * 2
    ok = SizeMatches(0.02, "adapter").evaluate(CASE, inv, expected_fp16, "2048 params in float16")
    assert ok.passed and ok.value == expected_fp16
    bad = SizeMatches(0.02, "adapter").evaluate(CASE, inv, expected_fp16 * 2, "2048 params in float32")
    assert not bad.passed
    assert "off by 50.00%, tolerance 2.00%" in bad.message and str(expected_fp16 * 2) in bad.message


def test_full_checkpoint_must_hold_every_weight(tmp_path):
    tensors = {"model.embed_tokens.weight": np.zeros((4, 4), np.float32),
               "lm_head.weight": np.zeros((4, 4), np.float32)}
    inv = ckpt(tmp_path, tensors, name="model.safetensors")
    assert HoldsWholeModel().evaluate(CASE, inv, list(tensors)).passed
    res = HoldsWholeModel().evaluate(CASE, inv, [*tensors, "model.norm.weight"])
    assert not res.passed and "lacks 1 of 3 weights, e.g. model.norm.weight" in res.message


def test_reload_check():
    assert ReloadMatches(1e-4).evaluate(CASE, 0.0, "PeftModel.from_pretrained").passed
    res = ReloadMatches(1e-4).evaluate(CASE, 0.5, "PeftModel.from_pretrained")
    assert not res.passed and "within 0.5" in res.message and "bound 0.0001" in res.message
    assert not ReloadMatches(1e-4).evaluate(CASE, math.inf, "x").passed


# operator names as torch's profiler reports them (CPU SDPA measured here; the CUDA ones are torch's
# backend operators, flash-attn 2.7's custom operator and its older autograd function)
SDPA_CPU = {"aten::_scaled_dot_product_flash_attention_for_cpu": 2,
            "aten::_scaled_dot_product_flash_attention_for_cpu_backward": 2}
SDPA_CUDA = {"aten::_scaled_dot_product_efficient_attention": 32}
FA2 = {"flash_attn::_flash_attn_forward": 32, "FlashAttnFuncBackward": 32}


@pytest.mark.parametrize("impl,ops,passed", [
    ("sdpa", SDPA_CPU, True), ("sdpa", SDPA_CUDA, True), ("sdpa", {}, False), ("sdpa", FA2, False),
    ("eager", {}, True), ("eager", SDPA_CPU, False),
    ("flash_attention_2", FA2, True), ("flash_attention_2", SDPA_CUDA, False),
    ("flash_attention_2", {"FlashAttnFuncBackward": 2}, True),
])
def test_attention_check_matches_the_asked_implementation_with_the_operators_that_ran(impl, ops, passed):
    res = AttentionRan().evaluate(CASE, impl, ops)
    assert res.passed is passed, res.message
    if not passed:
        assert "was asked for, but the profiled step ran" in res.message and CASE in res.message


def test_safetensors_inventory_reads_headers_and_rejects_truncation(tmp_path):
    inv = ckpt(tmp_path, lora_tensors())
    assert inv.tensor_bytes == 2 * 2 * 8 * 64 * 4 and inv.to_dict()["tensor_dtypes"] == ["F32"]
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(ValueError, match="truncated"):
        checkpoint.inventory(tmp_path)


def test_every_backend_declares_check_objects_and_metrics_the_judge_knows():
    """A trainer's own checks and logged metrics are declared by its backend package: each check a
    TrainerCheck object (no name looked up in a central table), each logged metric a Metric line the
    judge collected through the registry."""
    from suite.judge.metrics import METRICS
    from suite.train.backends.registry import BACKENDS

    assert unknown_declarations(BACKENDS, METRICS) == []


def test_a_backend_naming_a_check_or_an_unknown_metric_is_found():
    from suite.judge.metrics import METRICS
    from suite.train.backends.dpo.backend import DPO

    class Typo(DPO):
        checks = ("starts_at_ln_2",)
        logged_metrics = {"reward_margin": "rewards/margins"}

    assert unknown_declarations((Typo(),), METRICS) == [
        "trl DPOTrainer: check 'starts_at_ln_2'", "trl DPOTrainer: metric reward_margin"]


def unknown_declarations(backends, metrics) -> list[str]:
    from suite.train.backends.base import TrainerCheck

    return ([f"{b.name}: check {c!r}" for b in backends for c in b.checks if not isinstance(c, TrainerCheck)]
            + [f"{b.name}: metric {m}" for b in backends for m in b.logged_metrics if m not in metrics])
