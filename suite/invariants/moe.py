"""A mixture of experts' training loss: cross-entropy plus coefficient x the router's load-balancing
loss, counted once; and gradient accumulation, where only the cross-entropy part is a mean over the
tokens of the whole accumulated batch (the auxiliary loss is a statistic of each micro-batch's routing).

trl's SFTTrainer computes the cross-entropy through its fused LM head and adds
`router_aux_loss_coef x outputs.aux_loss` itself (divided by the accumulation steps); the model's own
loss would hold the same term, so a trainer that used both would count it twice.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from suite.invariants import harness as h
from suite.invariants.losses import UNEQUAL_ROWS, masked_loss
from suite.invariants.relations import NotApplicable, Verdict, compare
from suite.matrix.spec import LoraSpec

# The library functions each relation here must not call to compute what it expects (issue 36: a relation
# that calls the function it judges cannot see a change inside it); tests/judge/test_oracles.py scans the
# module for them. An empty tuple: the relation compares two real runs, or the trainer's output with the
# case's own settings, and computes no expected value a library function could supply.
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    # today's relation breaks this (expected_loss below): a strict xfail in tests/judge/test_oracles.py until the
    # by-definition MoE relation of issue 36 replaces it
    "moe.aux_loss.counted_once": ("transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func",),
    "moe.grad_accum.cross_entropy": ("transformers.loss.loss_utils.ForCausalLMLoss",),
}

# The adapters of cases/moe.yaml: the attention as modules, the fused experts as parameters.
MOE_LORA = LoraSpec(target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                    target_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"))


def moe_case(method: str, **training: Any):
    case = h.tiny_case(method, arch="mixtral", **training)
    return dataclasses.replace(case, lora=MOE_LORA) if case.is_adapter else case


def expected_loss(model, batch: dict) -> tuple[float, float, float]:
    """(cross-entropy, auxiliary loss, coefficient) of the batch, from a plain forward with the router
    logits: the cross-entropy by hand over the shifted unmasked targets, the auxiliary loss by the
    architecture's own load_balancing_loss_func on the router logits."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    balance = sys.modules[type(base).__module__].load_balancing_loss_func
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(**inputs, output_router_logits=True)
    finally:
        model.train(was_training)
    aux = balance(out.router_logits, cfg.num_local_experts, cfg.num_experts_per_tok, inputs.get("attention_mask"))
    return masked_loss(out.logits.float(), batch["labels"]), float(aux), float(cfg.router_aux_loss_coef)


def measure_aux_counted_once(method: str, out: Path, *, faults: dict[str, float] | None = None) -> Verdict:
    """The first logged loss against cross-entropy + coefficient x auxiliary loss of the batch step 1 was
    fed, computed apart; `faults`: suite/train/inject.py faults installed on the trainer (aux_twice...)."""
    from suite.train import inject

    case = moe_case(method, batch_size=len(UNEQUAL_ROWS), num_samples=len(UNEQUAL_ROWS), max_steps=1,
                    max_length=128)
    built = h.build_trainer(case, out, UNEQUAL_ROWS)
    _require_trl_weighting(built.trainer)
    if faults:
        inject.install(built.trainer, faults)
    logged, fed = h.train_first_step(built)
    ce, aux, coef = expected_loss(built.trainer.model, fed)
    return compare("moe.aux_loss.counted_once", logged[0], ce + coef * aux,
                   f"{method}, cross-entropy {ce:.6f} + {coef:g} x auxiliary loss {aux:.6f}")


def measure_moe_grad_accum(method: str, out: Path, *, accumulate: int = 4, trainer_cls=None) -> list[Verdict]:
    """Batch B x 1 against 1 x B, first step: the logged loss less coefficient x the logged auxiliary
    loss (the cross-entropy part) agrees; the auxiliary loss itself is reported, not bounded."""
    rows = UNEQUAL_ROWS[:accumulate]
    parts = []
    for bs, ga in ((accumulate, 1), (1, accumulate)):
        case = moe_case(method, batch_size=bs, grad_accum=ga, num_samples=len(rows), max_steps=1, max_length=128)
        built = h.build_trainer(case, out / f"bs{bs}-ga{ga}", rows, trainer_cls=trainer_cls)
        _require_trl_weighting(built.trainer)
        auxes: list[float] = []
        built.trainer.add_callback(_aux_log(auxes))
        losses = h.train_and_log(built)
        coef = float(built.trainer.router_aux_loss_coef)
        parts.append((losses[0] - coef * auxes[0], auxes[0]))
    (ce_a, aux_a), (ce_b, aux_b) = parts
    what = (f"{method}, step 1, batch {accumulate}x1 vs 1x{accumulate}; auxiliary loss {aux_a:.6f} vs "
            f"{aux_b:.6f} (a per-micro-batch statistic, not bounded)")
    return [compare("moe.grad_accum.cross_entropy", ce_a, ce_b, what)]


def _require_trl_weighting(trainer) -> None:
    """These relations measure trl's own weighting of the router loss (SFTTrainer.router_aux_loss_coef, which
    trl 1.16 adds per micro-batch); a trl without it leaves the loss to the model: not applicable."""
    if not hasattr(trainer, "router_aux_loss_coef"):
        raise NotApplicable(f"the installed trl's {type(trainer).__name__} does not weight the router's auxiliary "
                            f"loss itself (no router_aux_loss_coef): the model's forward adds it")


def _aux_log(into: list[float]):
    from transformers import TrainerCallback

    class _Aux(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "aux_loss" in logs:
                into.append(float(logs["aux_loss"]))

    return _Aux()
