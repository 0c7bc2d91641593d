"""The training mechanics' relations (suite/judge/mechanics.py) on crafted records: the suite's own
formulas (schedules, clipping, AdamW, the decay rule, LoRA's scaling) and each check passing on a clean
record and failing, with its cause named, on a record with one mechanic changed. The real runs are in
tests/train/test_mechanics.py."""
from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest

from suite.judge import mechanics as mech
from suite.matrix.spec import CheckSpec, LoraSpec
from suite.train.mechanics import GroupSeen, LoraSeen, Mechanics, StepSeen, UpdateSeen, adamw_expected, param_kind

ARGS = {"learning_rate": 1e-2, "lr_scheduler_type": "linear", "warmup_steps": 0, "warmup_ratio": None,
        "max_steps": 10, "max_grad_norm": 1.0, "weight_decay": 0.0, "adam_beta1": 0.9, "adam_beta2": 0.999,
        "adam_epsilon": 1e-8}


def case(adapter: bool = True):
    return SimpleNamespace(id="c", checks=CheckSpec(), lora=LoraSpec(r=8, alpha=16), is_adapter=adapter)


def record(lr_shift: int = 0, post_scale: float = 1.0, decay: float = 0.0, ratio: float = 2.0,
           update_rel: float = 1e-5) -> Mechanics:
    steps = []
    for k in range(1, 11):
        pre = 0.5 + 0.2 * k  # clips from step 3 on
        steps.append(StepSeen(k, [1e-2 * (1 - (k - 1 + lr_shift) / 10)] * 2, [decay, decay], pre,
                              mech.clipped(pre, 1.0) * post_scale))
    groups = [GroupSeen(decay, {"weight": 4}, {"weight": "a.weight"}),
              GroupSeen(decay, {"norm": 2, "bias": 1}, {"norm": "n.weight", "bias": "a.bias"})]
    return Mechanics("torch.optim.adamw.AdamW", {"betas": [0.9, 0.999], "eps": 1e-8}, dict(ARGS), groups, [], steps,
                     [UpdateSeen(2, 7, 100, update_rel, 1e-9, ["float32"])], None,
                     LoraSeen(14, ratio, ratio, 1e-7, {}, ["float32"]))


def payload(m: Mechanics, logged_shift: int = 0):
    curve = [{"step": s.step, "loss": 1.0, "grad_norm": s.pre_norm,
              "learning_rate": 1e-2 * (1 - (s.step - 1 + logged_shift) / 10)} for s in m.steps]
    return SimpleNamespace(loss_curve=curve, mechanics=m, raised={})


@pytest.mark.parametrize("kind,step,total,warmup,want", [
    ("linear", 0, 10, 0, 1.0), ("linear", 5, 10, 0, 0.5), ("linear", 10, 10, 0, 0.0), ("linear", 1, 10, 2, 0.5),
    ("linear", 2, 10, 2, 1.0), ("linear", 6, 10, 2, 0.5), ("cosine", 0, 10, 0, 1.0), ("cosine", 5, 10, 0, 0.5),
    ("cosine", 10, 10, 0, 0.0), ("constant", 7, 10, 0, 1.0), ("constant_with_warmup", 1, 10, 4, 0.25),
    ("constant_with_warmup", 9, 10, 4, 1.0),
])
def test_the_schedules_by_their_documented_formulas(kind, step, total, warmup, want):
    assert mech.lr_factor(kind, step, total, warmup) == pytest.approx(want, abs=1e-12)


def test_an_unknown_schedule_and_the_warmup_ratio():
    with pytest.raises(ValueError, match="no formula"):
        mech.lr_factor("polynomial", 1, 10, 0)
    assert mech.warmup_steps({"warmup_steps": 0.1}, 30) == 3
    assert mech.warmup_steps({"warmup_steps": 0, "warmup_ratio": 0.05}, 30) == 2
    assert mech.warmup_steps({"warmup_steps": 4}, 30) == 4


def test_clipping_and_scaling_formulas():
    assert mech.clipped(0.5, 1.0) == 0.5
    assert mech.clipped(4.0, 1.0) == pytest.approx(1.0, rel=1e-5)
    assert mech.lora_scale(16, 8) == 2.0 and mech.lora_scale(16, 8, rslora=True) == pytest.approx(16 / math.sqrt(8))


def test_the_adamw_formula_agrees_with_a_step_of_torch():
    """The suite's formula is written from the paper; torch's AdamW (plain and fused) is only its test here."""
    import torch

    gen = torch.Generator().manual_seed(0)
    for fused in (False, True):
        p = torch.nn.Parameter(torch.randn(64, generator=gen))
        opt = torch.optim.AdamW([p], lr=1e-2, weight_decay=0.1, fused=fused)
        for _ in range(2):
            p.grad = torch.randn(64, generator=gen)
            before, state = p.detach().clone(), opt.state.get(p)
            m = state["exp_avg"].clone() if state else torch.zeros(64)
            v = state["exp_avg_sq"].clone() if state else torch.zeros(64)
            count = int(state["step"]) + 1 if state else 1
            opt.step()
        want = adamw_expected(before, p.grad, m, v, count, 1e-2, 0.1, (0.9, 0.999), 1e-8)
        assert (p.detach().double() - want).abs().max() / (want - before.double()).abs().max() < 1e-4


def test_the_decay_rule_by_name_and_module():
    import torch

    assert param_kind("model.layers.0.self_attn.q_proj.bias", torch.nn.Linear(2, 2)) == "bias"
    assert param_kind("model.norm.weight", torch.nn.LayerNorm(2)) == "norm"
    assert param_kind("q_proj.lora_A.default.weight", torch.nn.Linear(2, 2)) == "weight"
    assert mech.expected_decay("norm", 0.1) == 0.0 and mech.expected_decay("weight", 0.1) == 0.1


def judged(m: Mechanics, c=None, logged_shift: int = 0) -> dict:
    c = c or case()
    return {name: evaluate() for name, evaluate in mech.planned(c, payload(m, logged_shift))}


def test_a_clean_record_passes_every_relation():
    out = judged(record())
    assert set(out) == set(mech.NAMES)
    assert all(r.passed for r in out.values()), [r.message for r in out.values() if not r.passed]
    assert "8 of 10 steps clipped" in out["grad_clipping"].message
    assert "lora_scaling" not in judged(record(), case(adapter=False))


@pytest.mark.parametrize("changed,name,words", [
    (dict(lr_shift=1), "lr_schedule", "the scheduler does not follow the configured schedule"),
    (dict(post_scale=0.5), "grad_clipping", "not clipped at max_grad_norm"),
    (dict(decay=0.1), "weight_decay_groups", "weight decay is applied where the config does not say so"),
    (dict(ratio=16 / math.sqrt(8)), "lora_scaling", "not lora_alpha / r"),
    (dict(update_rel=0.5), "optimizer_update", "does not apply the AdamW update"),
])
def test_each_changed_mechanic_fails_its_relation_only(changed, name, words):
    out = judged(record(**changed), logged_shift=changed.get("lr_shift", 0))
    assert not out[name].passed and words in out[name].message, out[name].message
    assert all(r.passed for n, r in out.items() if n != name), [r.message for r in out.values() if not r.passed]


def test_a_logged_rate_read_after_the_scheduler_stepped_is_accepted_and_said():
    out = judged(record(), logged_shift=1)["lr_schedule"]
    assert out.passed and "read after the scheduler stepped" in out.message


def test_no_clipping_is_said_to_be_weak_evidence():
    m = record()
    m.steps = [replace(s, pre_norm=0.5, post_norm=0.5) for s in m.steps]
    out = judged(m)["grad_clipping"]
    assert out.passed and "weak evidence" in out.message


def test_an_optimizer_the_formula_does_not_cover_is_said_not_judged():
    m = record()
    m.update_not_judged = "bitsandbytes.optim.adamw.AdamW8bit is not torch's plain AdamW"
    out = judged(m)["optimizer_update"]
    assert out.passed and not out.judged and "not judged" in out.message
    m.hyper = {"betas": [0.8, 0.999], "eps": 1e-8}
    assert "betas" in judged(m)["optimizer_update"].message and not judged(m)["optimizer_update"].passed


def test_a_parameter_in_no_group_and_a_probe_that_raised_fail():
    m = record()
    m.unassigned = ["model.embed_tokens.weight"]
    assert not judged(m)["weight_decay_groups"].passed
    p = payload(record())
    p.raised = {"mechanics": "RuntimeError: boom"}
    out = {n: e() for n, e in mech.planned(case(), p)}
    assert not out["lora_scaling"].passed and out["lora_scaling"].raised and out["lr_schedule"].passed


def test_a_recorder_that_raised_fails_every_relation_with_it():
    m = record()
    m.raised = "RuntimeError: hook"
    out = judged(m)
    assert all(not r.passed and r.raised == "RuntimeError: hook" for r in out.values())


def test_the_recorder_keeps_what_its_hook_raised():
    from suite.train.mechanics import MechanicsRecorder

    recorder = MechanicsRecorder(SimpleNamespace(), SimpleNamespace())  # no args: the install raises
    assert recorder.record.raised.startswith("AttributeError") and recorder.finish() is recorder.record


def test_a_distributed_run_is_said_not_judged():
    m = record()
    m.not_judged = "a distributed run (2 ranks): one rank's gradients"
    out = judged(m)
    assert all(r.passed and not r.judged and "not judged: a distributed run" in r.message for r in out.values())


def test_the_record_round_trips():
    m = record()
    assert Mechanics.from_dict(m.to_dict()) == m


def test_every_relation_lists_what_it_must_not_call():
    assert set(mech.FORBIDDEN_ORACLES) == set(mech.CHECKS)
    assert all(names and all("." in n for n in names) for names in mech.FORBIDDEN_ORACLES.values())
