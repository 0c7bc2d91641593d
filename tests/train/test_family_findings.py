"""What running each family's full set of cases found (cases/families_extended.yaml): the skips that name what a
machine lacks (suite/train/family_needs.py) and the router's loss trl adds to DPO's on a mixture of experts
(preference/relations.py's router_term). Crafted records and cases: fast, but the one that builds the models."""
from __future__ import annotations

import math

import pytest

from suite.cases import load_cases
from suite.train import family_needs
from suite.train.backends.dpo import checks as dpo_checks
from suite.train.backends.dpo import relations as dpo
from suite.train.backends.preference.relations import ROUTER_COEF, Call, MicroBatch, Recorded

AVX512_BF16 = ["avx2", family_needs.CPU_4BIT_FLAG]


@pytest.fixture(scope="module")
def cases():
    return {c.id: c for c in load_cases()}


def lacks(case, cuda=False, flags=AVX512_BF16, installed=lambda m: False) -> list[str]:
    return family_needs.family_lacks(case, cuda, flags, installed)


def test_narrow_4bit_layers_skip_only_on_an_avx512_bf16_cpu(cases):
    qlora = cases["tiny-qwen3.5/qlora/base/messages:assistant_only"]
    assert "linear_attn.in_proj_a" in lacks(qlora)[0] and "N must be divisible by block_n" in lacks(qlora)[0]
    assert "per_layer_input_gate" in lacks(cases["tiny-gemma4/qlora/base/messages:assistant_only"])[0]
    assert not lacks(qlora, cuda=True) and not lacks(qlora, flags=["avx2"])
    # the same families' unquantized cases and the other families' QLoRA run
    assert not lacks(cases["tiny-qwen3.5/full/base/messages:assistant_only"])
    assert not lacks(cases["tiny-qwen3/qlora/base/messages:assistant_only"])


def test_packed_qwen3_5_needs_causal_conv1d(cases):
    packed = cases["tiny-qwen3.5/lora/packing/messages:assistant_only"]
    assert "causal-conv1d" in lacks(packed)[0] and not lacks(packed, installed=lambda m: True)
    assert not lacks(cases["tiny-qwen3/lora/packing/messages:assistant_only"])


@pytest.mark.slow
def test_the_narrow_layer_table_is_the_tiny_models_own():
    """Every tiny arch whose 4-bit-quantized layers (nn.Linear but the head) have a width bitsandbytes' CPU repacking
    refuses is in CPU_4BIT_NARROW, and no other (built on the meta device: no weights)."""
    import torch
    import transformers

    from suite.train.models import TINY_ARCHS, tiny_config

    narrow = set()
    for arch in TINY_ARCHS:
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(tiny_config(arch, 300))
        if any(isinstance(m, torch.nn.Linear) and m.out_features % family_needs.CPU_4BIT_BLOCK and "lm_head" not in n
               for n, m in model.named_modules()):
            narrow.add(arch)
    assert narrow == set(family_needs.CPU_4BIT_NARROW)


LOSS = math.log(1 + math.exp(-0.2))  # one pair, beta 0.1, delta 2 (tests/train/test_preference_definitions.py)


def _record(coef: float) -> Recorded:
    batch = MicroBatch(1, 0.0, [Call(True, 2, [-10.0, -12.0]), Call(False, 2, [-11.0, -11.0])], [4, 2])
    return Recorded({"beta": 0.1, "loss_type": ["sigmoid"], "label_smoothing": 0.0, ROUTER_COEF: coef}, [batch])


def test_the_dpo_loss_of_a_mixture_of_experts_holds_with_the_routers_term():
    """trl adds coefficient x aux_loss to DPO's loss on a mixture of experts: the relation adds it too, and fails
    a logged loss without it (as it failed the MoE cases before it did) or one whose step logged no aux_loss."""
    curve = [{"step": 1, "loss": LOSS + 0.01 * 2.0, "aux_loss": 2.0}]
    assert dpo.loss_relation("c", _record(0.01), curve, 1e-6).passed
    assert not dpo.loss_relation("c", _record(0.0), curve, 1e-6).passed  # the term left out: 0.02 off
    assert not dpo.loss_relation("c", _record(0.01), [{"step": 1, "loss": LOSS}], 1e-6).passed
    missing = dpo.loss_relation("c", _record(0.01), [{"step": 1, "loss": LOSS + 0.02}], 1e-6)
    assert "logged no aux_loss" in missing.message


def test_the_first_dpo_loss_of_a_mixture_of_experts_is_ln2_plus_the_routers_term(cases):
    from types import SimpleNamespace

    from suite.train.backends.preference.relations import KEY

    case = cases["tiny-qwen3-moe/dpo/lora/base/conversational_preference"]
    curve = [{"step": 1, "loss": math.log(2) + 0.01 * 2.03, "aux_loss": 2.03}]

    def starts(coef: float):
        resolved = {KEY: {"settings": _record(coef).settings, "micro_batches": []}}
        payload = SimpleNamespace(resolved=resolved, loss_curve=curve, losses=[c["loss"] for c in curve])
        starts_at_ln2 = next(c for c in dpo_checks.CHECKS if c.name == "starts_at_ln2")
        return starts_at_ln2.evaluate(case, payload, None, None)

    assert starts(0.01).passed, starts(0.01).message
    assert not starts(0.0).passed and "0.02 from ln 2" in starts(0.0).message
