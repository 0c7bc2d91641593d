"""GRPO's and RLOO's definitions (suite/train/backends/online/definitions.py) against small examples computed by hand,
and the by-definition checks (relations.py) on crafted records: each passes on the definition's values and fails,
naming the cause, on a silent change's. Nothing is trained."""
from __future__ import annotations

import math

import pytest

from suite.train.backends.online import definitions as d
from suite.train.backends.online import relations as r


def test_grpo_advantages_under_each_scale_rewards():
    rewards = [0.0, 1.0, 0.0, 1.0]
    group_std = math.sqrt(0.5)  # unbiased: (0.25 + 0.25) / (2 - 1)
    batch_std = math.sqrt(1.0 / 3.0)  # unbiased: 4 x 0.25 / (4 - 1)
    assert d.grpo_advantages(rewards, 2, "group") == pytest.approx([-0.5 / (group_std + 1e-4), 0.5 / (group_std + 1e-4)] * 2)
    assert d.grpo_advantages(rewards, 2, "batch") == pytest.approx([-0.5 / (batch_std + 1e-4), 0.5 / (batch_std + 1e-4)] * 2)
    assert d.grpo_advantages(rewards, 2, "none") == pytest.approx([-0.5, 0.5] * 2)
    assert d.grpo_advantages([0.3] * 4, 4, "group") == [0.0] * 4  # no spread: 0 / (0 + 1e-4)


def test_rloo_advantages_leave_one_out_clip_kl_and_normalisation():
    assert d.rloo_advantages([1.0, 0.0, 0.0, 0.0], 4) == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])
    assert d.rloo_advantages([1.0, 0.0, 0.0, 0.0], 4, clip=(0.0, 0.5)) == pytest.approx([0.5, -1 / 6, -1 / 6, -1 / 6])
    assert d.rloo_advantages([1.0, 0.0, 0.0, 0.0], 4, kl=[1.0, 0, 0, 0], beta=0.1) == pytest.approx([0.9, -0.3, -0.3, -0.3])
    std = 2 / 3  # of [1, -1/3, -1/3, -1/3], unbiased
    assert d.rloo_advantages([1.0, 0.0, 0.0, 0.0], 4, normalize=True) == pytest.approx(
        [1 / (std + 1e-4)] + [-1 / 3 / (std + 1e-4)] * 3)


def test_the_completion_mask_and_truncation():
    assert d.completion_mask([5, 3, 7, 0], [3], 0, False) == [1, 1, 0, 0]  # up to the first EOS, included
    assert d.completion_mask([5, 6, 7, 8], [3], 0, False) == [1, 1, 1, 1]
    assert d.completion_mask([5, 6, 7, 8], [3], 0, True) == [0, 0, 0, 0]  # truncated: none of it
    assert d.completion_mask([5, 3, 7, 0], [3], 0, True) == [1, 1, 0, 0]
    assert d.sequence_kl([-1.0, -2.0, -3.0], [-1.5, -1.0, 0.0], [1, 1, 0]) == pytest.approx(-0.5)


def _batch(lp: float = math.log(0.5), ratio: float = 1.0, ref: list | None = None) -> d.MicroBatch:
    """Two completions of 2 and 1 tokens (4 allowed), advantages 1 and -1."""
    logps = [[lp, lp], [lp, lp]]
    return d.MicroBatch(logps=logps, old=[[x - math.log(ratio) for x in row] for row in logps], ref=ref,
                        mask=[[1, 1], [1, 0]], advantages=[1.0, -1.0], generation_tokens=3)


@pytest.mark.parametrize("loss_type, expected", [
    ("dapo", -1 / 3), ("bnpo", -1 / 3), ("grpo", 0.0), ("dr_grpo", -1 / 8), ("luspo", -0.5),
    # -A x log p (ratio 1, phi(1) = 1): (2 ln 2 - ln 2) / 3 tokens; cispo caps the ratio at epsilon_high (its
    # epsilon max, which defaults to epsilon, 0.2: trl's documented default, however small)
    ("cispo", 0.2 * math.log(2) / 3), ("vespo", math.log(2) / 3),
    # the soft gate at ratio 1: 4 sigmoid(0) / tau = 2 / tau; per completion -2 (tau 1), +2 / 1.05 (tau 1.05)
    ("sapo", (-2.0 + 2 / 1.05) / 2)])
def test_each_loss_type_at_ratio_one(loss_type, expected):
    cfg = d.LossConfig(loss_type=loss_type, max_completion_length=4)
    assert d.grpo_loss(_batch(), cfg) == pytest.approx(expected)
    assert d.grpo_loss(_batch(), d.LossConfig(loss_type=loss_type, max_completion_length=4, grad_accum=2,
                                              steps_per_generation=2)) == pytest.approx(expected / (1 if loss_type in (
                                                  "dapo", "cispo", "vespo") else 2))


def test_clipping_the_kl_term_and_rloo():
    cfg = d.LossConfig(loss_type="bnpo", max_completion_length=4)
    # ratio 2, epsilon 0.2: -min(2 x 1, 1.2 x 1) = -1.2 per token of the first; -min(-2, -1.2) = 2 for the second
    assert d.grpo_loss(_batch(ratio=2.0), cfg) == pytest.approx((-1.2 * 2 + 2.0) / 3)
    unclipped = d.LossConfig(loss_type="bnpo", max_completion_length=4, epsilon_low=math.inf, epsilon_high=math.inf)
    assert d.grpo_loss(_batch(ratio=2.0), unclipped) == pytest.approx((-2 * 2 + 2.0) / 3)
    lp = math.log(0.5)
    ref = [[lp - 1, lp - 1], [lp - 1, lp - 1]]  # k3: exp(-1) + 1 - 1 per token
    kl = math.exp(-1)
    with_kl = d.LossConfig(loss_type="bnpo", max_completion_length=4, beta=0.1)
    assert d.grpo_loss(_batch(ref=ref), with_kl) == pytest.approx((-2 + 1) / 3 + 0.1 * kl)
    # the KL weighed by the ratio (use_bias_correction_kl) unless switched off
    assert d.grpo_loss(_batch(ratio=1.1, ref=ref), with_kl) != pytest.approx(
        d.grpo_loss(_batch(ratio=1.1, ref=ref), d.LossConfig(loss_type="bnpo", max_completion_length=4, beta=0.1,
                                                              kl_times_ratio=False)))
    assert d.rloo_loss(_batch(), cfg) == pytest.approx(0.0)  # mean(-A)
    # the sequence ratio: exp(2 ln 2) = 4 clipped to 1.2 for A = 1; exp(ln 2) = 2, min(-2, -1.2) for A = -1
    assert d.rloo_loss(_batch(ratio=2.0), cfg) == pytest.approx((-1.2 + 2.0) / 2)
    with pytest.raises(ValueError, match="no definition of GRPO's loss type 'ppo'"):
        d.grpo_loss(_batch(), d.LossConfig(loss_type="ppo"))


def _record(batch: d.MicroBatch, loss: float, trl_mask=None) -> dict:
    return {"step": 1, "micro_batch": 0, "loss": loss, "logps": batch.logps, "old": batch.old, "ref": batch.ref,
            "mask": batch.mask, "generation_tokens": batch.generation_tokens, "advantages": batch.advantages,
            "trl_mask": trl_mask or batch.mask, "trl_old": None, "trl_items": None}


CONFIG = {"loss_type": "dapo", "beta": 0.0, "epsilon": 0.2, "epsilon_high": None, "gradient_accumulation_steps": 1,
          "steps_per_generation": 1, "max_completion_length": 4, "scale_rewards": "group"}


def test_the_loss_check_passes_the_definition_and_names_each_cause():
    check = r.LossByDefinition(1e-6, "GRPO")
    clean = _batch()
    assert check.evaluate("c", [_record(clean, -1 / 3)], CONFIG, "dapo").passed
    per_sequence = check.evaluate("c", [_record(clean, 0.0)], CONFIG, "dapo")  # grpo's value
    assert not per_sequence.passed and "the loss is grpo's" in per_sequence.message
    wide = _record(clean, (-2 * 2 + 2.0) / 3, trl_mask=[[1, 1], [1, 1]])  # a truncated token counted: 4 tokens
    wide["loss"] = (-2 + 2.0) / 4
    counted = check.evaluate("c", [wide], CONFIG, "dapo")
    assert not counted.passed and "truncated completions counted" in counted.message
    clipped = _batch(ratio=2.0)
    unclipped = check.evaluate("c", [_record(clipped, (-2 * 2 + 2.0) / 3)], CONFIG, "dapo")
    assert not unclipped.passed and "not clipped" in unclipped.message
    refused = check.evaluate("c", [_record(clean, -1 / 3)], {**CONFIG, "entropy_coef": 0.1}, "dapo")
    assert not refused.passed and "not derived for entropy_coef=0.1" in refused.message
    assert "no micro-batch" in check.evaluate("c", [], CONFIG, "dapo").message


def test_the_advantages_check_names_the_scale_and_the_baseline():
    rewards = [0.0, 1.0, 0.25, 0.5]
    grpo = r.AdvantagesByDefinition(1e-6, 2, lambda p: r.grpo_candidates(p["sampled/rewards"], 2, "group"))
    point = {"step": 1, "sampled/rewards": rewards, "sampled/advantages": d.grpo_advantages(rewards, 2, "group")}
    assert grpo.evaluate("c", [point], "GRPO").passed
    unscaled = grpo.evaluate("c", [{**point, "sampled/advantages": d.grpo_advantages(rewards, 2, "none")}], "GRPO")
    assert not unscaled.passed and "not scaled by the reward std" in unscaled.message
    assert "scale_rewards 'group' says otherwise" in unscaled.message
    rloo = r.AdvantagesByDefinition(1e-6, 2, lambda p: r.rloo_candidates(p["sampled/rewards"], 2, {}, None))
    loo = {"step": 1, "sampled/rewards": rewards, "sampled/advantages": d.rloo_advantages(rewards, 2)}
    assert rloo.evaluate("c", [loo], "RLOO").passed
    mean_base = [x / 2 for x in d.rloo_advantages(rewards, 2)]  # (n - 1) / n
    selfish = rloo.evaluate("c", [{**loo, "sampled/advantages": mean_base}], "RLOO")
    assert not selfish.passed and "includes the completion itself" in selfish.message
    assert not grpo.evaluate("c", [{"step": 1}], "GRPO").passed


def test_forbidden_oracles_name_each_relation():
    assert set(d.FORBIDDEN_ORACLES) == {"advantages_by_definition", "loss_by_definition"}
    assert all(name.count(".") >= 1 for names in d.FORBIDDEN_ORACLES.values() for name in names)


def oracle_calls(source: str) -> list[str]:
    """The forbidden oracles a module's source imports or calls (trl's by their last name, torch's as torch.<name>),
    and any trl import."""
    import ast

    dotted = [n for names in d.FORBIDDEN_ORACLES.values() for n in names]
    torch_names = {n.split(".", 1)[1] for n in dotted if n.startswith("torch.")}
    names = {n.rsplit(".", 1)[-1] for n in dotted if not n.startswith("torch.")}
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            found += [m for m in mods if m and m.split(".")[0] == "trl"]
        elif isinstance(node, ast.Attribute) and (node.attr in names or (
                node.attr in torch_names and isinstance(node.value, ast.Name) and node.value.id == "torch")):
            found.append(node.attr)
        elif isinstance(node, ast.Name) and node.id in names:
            found.append(node.id)
    return found


def test_the_relations_call_none_of_their_forbidden_oracles():
    """What computes the expected values (definitions, relations, the child's own forward) imports no trl and calls
    none of the functions FORBIDDEN_ORACLES names; a planted call is found."""
    import inspect

    from suite.train.backends.online import lossrecord

    for source in (inspect.getsource(d), inspect.getsource(r), inspect.getsource(lossrecord.own_logps)):
        assert oracle_calls(source) == [], source[:200]
    assert set(oracle_calls("from trl.trainer.utils import nanstd\nx = nanstd(t)")) == {"trl.trainer.utils", "nanstd"}
    assert oracle_calls("loss = trainer._compute_loss(model, inputs)") == ["_compute_loss"]
    assert oracle_calls("s = torch.std(x)\nstd = 1") == ["std"]
