"""A mixture of experts' training loss: cross-entropy plus coefficient x the router's load-balancing
loss, counted once; and gradient accumulation, where only the cross-entropy part is a mean over the
tokens of the whole accumulated batch (the auxiliary loss is a statistic of each micro-batch's routing).

trl's SFTTrainer computes the cross-entropy through its fused LM head and adds
`router_aux_loss_coef x outputs.aux_loss` itself (divided by the accumulation steps); the model's own
loss would hold the same term, so a trainer that used both would count it twice.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from suite.invariants import harness as h
from suite.invariants.losses import UNEQUAL_ROWS, masked_loss
from suite.invariants.relations import RELATIONS, NotApplicable, Verdict, compare
from suite.matrix.spec import LoraSpec
# the suite's own formulas, one copy, shared with each MoE case's child (suite/judge/modeling.py judges those)
from suite.train.modeling import balance_loss, experts_of, probability_rows

# The library functions each relation here must not call to compute what it expects (issue 36: a relation
# that calls the function it judges cannot see a change inside it); tests/judge/test_oracles.py scans the
# module for them. An empty tuple: the relation compares two real runs, or the trainer's output with the
# case's own settings, and computes no expected value a library function could supply.
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "moe.aux_loss.counted_once": ("transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func",
                                  "transformers.models.qwen3_moe.modeling_qwen3_moe.load_balancing_loss_func",
                                  "transformers.models.gpt_oss.modeling_gpt_oss.load_balancing_loss_func"),
    "moe.aux_loss.by_definition": ("transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func",
                                   "transformers.models.qwen3_moe.modeling_qwen3_moe.load_balancing_loss_func",
                                   "transformers.models.gpt_oss.modeling_gpt_oss.load_balancing_loss_func"),
    "moe.router_logits.are_logits": ("transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func",),
    "moe.grad_accum.cross_entropy": ("transformers.loss.loss_utils.ForCausalLMLoss",),
}
# The architectures of the cases with a router: cases/moe.yaml's mixtral, cases/families.yaml's two.
MOE_ARCHS = ("mixtral", "qwen3_moe", "gpt_oss")

# The adapters of cases/moe.yaml: the attention as modules, the fused experts as parameters.
MOE_LORA = LoraSpec(target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                    target_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"))

# the architectures whose LoRA these relations target as cases/moe.yaml does (the others: the default LoraSpec)
ADAPTERS = {"mixtral": MOE_LORA}


def moe_case(method: str, arch: str = "mixtral", **training: Any):
    case = h.tiny_case(method, arch=arch, **training)
    lora = ADAPTERS.get(arch)
    return dataclasses.replace(case, lora=lora) if case.is_adapter and lora is not None else case


def expert_counts(config: Any) -> tuple[int, int]:
    """(number of experts, experts per token) as the architecture's config names them, or not applicable."""
    counts = experts_of(config)
    if counts is None:
        raise NotApplicable(f"{type(config).__name__} names no number of experts and experts per token")
    return counts


def router_forward(model, inputs: dict):
    """A plain eval-mode forward asking for the router logits and the model's own auxiliary loss."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(**inputs, output_router_logits=True)
    finally:
        model.train(was_training)


def expected_loss(model, batch: dict) -> tuple[float, float, float]:
    """(cross-entropy, auxiliary loss, coefficient) of the batch, from a plain forward with the router
    logits: the cross-entropy by hand over the shifted unmasked targets, the auxiliary loss by the suite's
    own balance_loss on the router logits (never the architecture's own auxiliary-loss function)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
    out = router_forward(model, inputs)
    aux = balance_loss(out.router_logits, *expert_counts(base.config), inputs.get("attention_mask"))
    return masked_loss(out.logits.float(), batch["labels"]), aux, float(base.config.router_aux_loss_coef)


def measure_aux_by_definition(arch: str, method: str, out: Path, *,
                              faults: dict[str, float] | None = None) -> list[Verdict]:
    """After a few real training steps, on a padded batch of unequal rows: the model's own auxiliary loss (what
    trl weights) against the suite's balance_loss of its router logits, and the router logits not already
    probabilities. `faults`: suite/train/inject.py seam faults active while it trains and measures."""
    case = moe_case(method, arch=arch, batch_size=len(UNEQUAL_ROWS), num_samples=len(UNEQUAL_ROWS), max_steps=3,
                    max_length=128)
    with h.seam_faults(faults):
        built = h.build_trainer(case, out, UNEQUAL_ROWS)
        h.train_and_log(built)
        model = built.trainer.model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        built.tokenizer.padding_side = "right"
        enc = built.tokenizer([r["text"] for r in UNEQUAL_ROWS], return_tensors="pt", padding=True)
        enc = {k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        fwd = router_forward(model, enc)
    experts, top_k = expert_counts(base.config)
    own = balance_loss(fwd.router_logits, experts, top_k, enc["attention_mask"])
    what = f"{arch} {method}, {experts} experts, top {top_k}, {int(enc['attention_mask'].sum())} unpadded tokens"
    probs = probability_rows(fwd.router_logits)
    return [compare("moe.aux_loss.by_definition", float(fwd.aux_loss), own,
                    f"{what}: the model's {float(fwd.aux_loss):.6f}, by definition {own:.6f}"),
            RELATIONS["moe.router_logits.are_logits"].measure(
                len(probs), f"{what}: {', '.join(probs) if probs else 'no layer'} records probabilities "
                            f"where the router's logits belong")]


def measure_aux_counted_once(method: str, out: Path, *, faults: dict[str, float] | None = None,
                             arch: str = "mixtral") -> Verdict:
    """The first logged loss against cross-entropy + coefficient x auxiliary loss of the batch step 1 was
    fed, computed apart; `faults`: suite/train/inject.py faults installed on the trainer (aux_twice...)."""
    from suite.train import inject

    case = moe_case(method, arch=arch, batch_size=len(UNEQUAL_ROWS), num_samples=len(UNEQUAL_ROWS), max_steps=1,
                    max_length=128)
    built = h.build_trainer(case, out, UNEQUAL_ROWS)
    _require_trl_weighting(built.trainer)
    if faults:
        inject.install(built.trainer, faults)
    logged, fed = h.train_first_step(built)
    ce, aux, coef = expected_loss(built.trainer.model, fed)
    return compare("moe.aux_loss.counted_once", logged[0], ce + coef * aux,
                   f"{arch} {method}, cross-entropy {ce:.6f} + {coef:g} x auxiliary loss {aux:.6f}")


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
