"""A mixture of experts' loss: cross-entropy plus coefficient x the router's auxiliary loss, counted once;
and gradient accumulation, where only the cross-entropy part is a mean over the whole batch's tokens."""
from __future__ import annotations

import pytest

from suite.invariants import moe, runs

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.mixtral, pytest.mark.moe]
METHODS = [pytest.param("full", marks=pytest.mark.full),
           pytest.param("lora", marks=[pytest.mark.lora, pytest.mark.adapter])]


@pytest.mark.parametrize("method", METHODS)
def test_the_aux_loss_is_counted_once(method, tmp_path, invariant):
    invariant.holds(moe.measure_aux_counted_once(method, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.parametrize("fault", ["aux_twice", "aux_dropped"])
def test_can_fail_with_the_aux_loss_twice_or_dropped(fault, tmp_path, invariant):
    invariant.breaks(moe.measure_aux_counted_once("lora", tmp_path, faults={fault: 1.0}), "moe.aux_loss.counted_once")


@pytest.mark.parametrize("method", METHODS)
def test_batch_and_accumulation_agree_on_the_cross_entropy(method, tmp_path, invariant):
    invariant.holds(moe.measure_moe_grad_accum(method, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_per_micro_batch_mean(tmp_path, invariant):
    verdicts = moe.measure_moe_grad_accum("lora", tmp_path, trainer_cls=runs.per_micro_batch_mean_trainer())
    invariant.breaks(verdicts, "moe.grad_accum.cross_entropy")


@pytest.mark.full
@pytest.mark.parametrize("arch", moe.MOE_ARCHS)
def test_the_aux_loss_is_the_switch_formula_of_the_router_logits(arch, tmp_path, invariant):
    invariant.holds(moe.measure_aux_by_definition(arch, "full", tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
def test_the_aux_loss_by_definition_holds_with_a_lora_adapter(tmp_path, invariant):
    invariant.holds(moe.measure_aux_by_definition("mixtral", "lora", tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.parametrize("fault", ["aux_softmax_twice", "aux_top_k_wrong"])
def test_a_change_inside_the_aux_function_fails_the_definition_alone(fault, tmp_path, invariant):
    verdicts = moe.measure_aux_by_definition("mixtral", "lora", tmp_path, faults={fault: 1.0})
    invariant.breaks(verdicts, "moe.aux_loss.by_definition")
    assert all(v.passed for v in verdicts if v.relation.name != "moe.aux_loss.by_definition")


@pytest.mark.lora
@pytest.mark.adapter
def test_router_probabilities_recorded_as_logits_fail_are_logits_alone(tmp_path, invariant):
    verdicts = moe.measure_aux_by_definition("mixtral", "lora", tmp_path, faults={"router_probabilities": 1.0})
    invariant.breaks(verdicts, "moe.router_logits.are_logits")
    assert all(v.passed for v in verdicts if v.relation.name != "moe.router_logits.are_logits")


@pytest.mark.lora
@pytest.mark.adapter
def test_the_old_shared_oracle_could_not_see_the_change_inside_the_aux_function(tmp_path):
    """The relation this file had before issue 36 computed the expected auxiliary loss with the architecture's
    own load_balancing_loss_func, which the fault changes for the trainer and that oracle alike: measured, it
    agrees with the faulted model to float rounding, while the suite's own formula sees the change."""
    import sys

    import torch

    from suite.invariants import harness as h
    from suite.invariants.losses import UNEQUAL_ROWS

    case = moe.moe_case("lora", batch_size=4, num_samples=4, max_steps=1, max_length=128)
    with h.seam_faults({"aux_softmax_twice": 1.0}), h.quiet():
        built = h.build_trainer(case, tmp_path, UNEQUAL_ROWS)
        h.train_and_log(built)
        model = built.trainer.model
        base = model.get_base_model()
        enc = built.tokenizer([r["text"] for r in UNEQUAL_ROWS], return_tensors="pt", padding=True)
        inputs = {k: enc[k] for k in ("input_ids", "attention_mask")}
        out = moe.router_forward(model, inputs)
        shared = sys.modules[type(base).__module__].load_balancing_loss_func  # the old oracle: the trainer's own
        old = float(shared(out.router_logits, base.config.num_local_experts, base.config.num_experts_per_tok,
                           inputs["attention_mask"]))
    own = moe.balance_loss(out.router_logits, *moe.expert_counts(base.config), inputs["attention_mask"])
    print(f"model {float(out.aux_loss):.6f}, old shared oracle {old:.6f}, by definition {own:.6f}")
    assert abs(float(out.aux_loss) - old) <= 1e-6, "the shared oracle should have agreed with the faulted model"
    assert abs(float(out.aux_loss) - own) > 1e-3
    assert isinstance(out.aux_loss, torch.Tensor)
