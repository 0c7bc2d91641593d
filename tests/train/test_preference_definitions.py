"""The suite's own preference formulas (suite/train/backends/preference/definitions.py) on small examples
computed by hand, and each by-definition relation on crafted records: it passes on values that follow the
definition and fails, naming the cause, on values that do not (no training: fast)."""
from __future__ import annotations

import math

import pytest

from suite.train.backends.dpo import relations as dpo
from suite.train.backends.kto import relations as kto
from suite.train.backends.preference import definitions as d
from suite.train.backends.preference.relations import Call, MicroBatch, Recorded, read_recorded
from suite.train.backends.reward import relations as reward

LN2 = math.log(2)
# one pair: policy chosen -10, rejected -12; reference chosen -11, rejected -11: log-ratios +1 and -1, delta 2
PAIR = d.Pair(-10.0, -12.0, -11.0, -11.0, chosen_tokens=4, rejected_tokens=2)


def test_dpo_losses_by_hand():
    beta = 0.1  # beta x delta = 0.2
    assert d.dpo_loss([PAIR], beta) == pytest.approx(math.log(1 + math.exp(-0.2)))
    assert d.dpo_loss([PAIR], beta, ("hinge",)) == pytest.approx(0.8)
    # IPO, per token: 1/4 - (-1/2) = 0.75; (0.75 - 1/(2 x 0.1))^2 = (0.75 - 5)^2
    assert d.dpo_loss([PAIR], beta, ("ipo",)) == pytest.approx(4.25 ** 2)
    # robust, eps 0.1: ((0.9 x softplus(-0.2)) - 0.1 x softplus(0.2)) / 0.8
    sp = lambda x: math.log(1 + math.exp(x))  # noqa: E731
    robust = (0.9 * sp(-0.2) - 0.1 * sp(0.2)) / 0.8
    assert d.dpo_loss([PAIR], beta, ("robust",), label_smoothing=0.1) == pytest.approx(robust)
    assert d.dpo_loss([PAIR], beta, ("bco_pair",)) == pytest.approx(sp(-0.1) + sp(-0.1))
    assert d.dpo_loss([PAIR], beta, ("sppo_hard",)) == pytest.approx((1 - 5) ** 2 + (-1 + 5) ** 2)
    zero = d.Pair(0.0, 0.0, 0.0, 0.0)
    assert d.dpo_loss([zero], beta) == pytest.approx(LN2)
    assert d.dpo_loss([zero], beta, ("sigmoid", "hinge"), (1.0, 0.5)) == pytest.approx(LN2 + 0.5)
    assert d.dpo_rewards([PAIR], beta) == pytest.approx({"rewards/chosen": 0.1, "rewards/rejected": -0.1,
                                                          "rewards/margins": 0.2})
    with pytest.raises(KeyError):
        d.dpo_loss([PAIR], beta, ("bogus",))


sp = lambda x: math.log(1 + math.exp(x))  # noqa: E731 - softplus: -log sigmoid(-x)
s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
# a second pair whose order differs between the policy's and the reference's margins: policy margin -5 - -4 = -1,
# reference margin -4 - -7 = +3 (PAIR's: 2 and 0), log-ratios chosen -1, rejected +3
PAIR2 = d.Pair(-5.0, -4.0, -4.0, -7.0, chosen_tokens=3, rejected_tokens=3)


def test_the_loss_types_trl_added_by_hand():
    beta = 0.1  # beta x delta = 0.2 on PAIR
    # sigmoid_norm: per-token log-ratios 1/4 - (-1/2) = 0.75
    assert d.dpo_loss([PAIR], beta, ("sigmoid_norm",)) == pytest.approx(sp(-0.075))
    # EXO, eps 0.1: q = (s(0.2), s(-0.2)) against p = (0.9, 0.1), KL(q || p)
    exo = s(0.2) * math.log(s(0.2) / 0.9) + s(-0.2) * math.log(s(-0.2) / 0.1)
    assert d.dpo_loss([PAIR], beta, ("exo_pair",), label_smoothing=0.1) == pytest.approx(exo)
    # DiscoPOP, tau 0.05: blend s(0.2 / 0.05) = s(4) between softplus(-0.2) and e^-0.2
    disco = (1 - s(4)) * sp(-0.2) + s(4) * math.exp(-0.2)
    assert d.dpo_loss([PAIR], beta, ("discopop",)) == pytest.approx(disco)
    assert d.dpo_loss([PAIR], beta, ("discopop",), discopop_tau=0.2) == pytest.approx(
        (1 - s(1)) * sp(-0.2) + s(1) * math.exp(-0.2))
    # AOT: policy margins sorted [-1, 2] against reference margins sorted [0, 3]: deltas [-1, -1] (paired: 2, -4)
    assert d.dpo_loss([PAIR, PAIR2], beta, ("aot",)) == pytest.approx(sp(0.1))
    assert d.dpo_loss([PAIR, PAIR2], beta, ("aot",), label_smoothing=0.1) == pytest.approx(
        0.9 * sp(0.1) + 0.1 * sp(-0.1))
    # AOT unpaired: chosen log-ratios sorted [-1, 1] against rejected sorted [-1, 3]: deltas [0, -2]
    assert d.dpo_loss([PAIR, PAIR2], beta, ("aot_unpaired",)) == pytest.approx((LN2 + sp(0.2)) / 2)
    # SFT: the chosen completions' NLL per token over the batch, (10 + 5) / (4 + 3)
    assert d.dpo_loss([PAIR, PAIR2], beta, ("sft",)) == pytest.approx(15 / 7)
    # RPO: sigmoid + alpha x SFT, the weights in loss_type's order
    rpo = d.dpo_loss([PAIR], beta, ("sigmoid", "sft"), (1.0, 0.2))
    assert rpo == pytest.approx(sp(-0.2) + 0.2 * 10 / 4)
    assert d.dpo_loss([PAIR], beta, ("sigmoid", "sft"), (0.2, 1.0)) != pytest.approx(rpo)  # swapped weights show
    assert set(d.DPO_LOSS_TYPES) >= {"exo_pair", "aot", "aot_unpaired", "discopop", "sft", "sigmoid_norm"}
    assert len(d.DPO_LOSS_TYPES) == 15


def test_kto_and_reward_by_hand():
    assert d.kto_kl([1.0, 2.0], [1.5, 1.0]) == pytest.approx(0.25)
    assert d.kto_kl([1.0], [3.0]) == 0.0  # clamped at 0
    # desirable ratio 1, undesirable ratio -1, KL 0, beta 1: (1 - s(1)) and 2 x (1 - s(1)), mean
    s1 = 1 / (1 + math.exp(-1))
    assert d.kto_loss([1.0, -1.0], [True, False], 0.0, 1.0, 1.0, 2.0) == pytest.approx(1.5 * (1 - s1))
    assert d.reward_loss([1.0], [0.0]) == pytest.approx(math.log(1 + math.exp(-1)))
    assert d.reward_loss([1.0], [0.0], center=0.1) == pytest.approx(math.log(1 + math.exp(-1)) + 0.1)
    assert d.logsigmoid(-800.0) == -800.0 and d.logsigmoid(800.0) == 0.0  # stable at both ends


def _dpo_record(beta: float = 0.1, loss_type: str = "sigmoid", own: dict | None = None) -> Recorded:
    batch = MicroBatch(1, 0.0, [Call(True, 2, [-10.0, -12.0]), Call(False, 2, [-11.0, -11.0])], [4, 2], own=own)
    return Recorded({"beta": beta, "loss_type": [loss_type], "label_smoothing": 0.0}, [batch])


def test_the_dpo_relations_on_crafted_records():
    rec, loss = _dpo_record(), math.log(1 + math.exp(-0.2))
    curve = [{"step": 1, "loss": loss, "rewards/chosen": 0.1, "rewards/rejected": -0.1, "rewards/margins": 0.2}]
    assert dpo.loss_relation("c", rec, curve, 1e-6).passed
    assert dpo.rewards_relation("c", rec, curve, 1e-6).passed
    twice = [{**curve[0], "loss": math.log(1 + math.exp(-0.02))}]
    bad = dpo.loss_relation("c", rec, twice, 1e-6)
    assert not bad.passed and "beta applied twice" in bad.message
    unscaled = [{**curve[0], "rewards/chosen": 1.0}]
    assert "beta missing" in dpo.rewards_relation("c", rec, unscaled, 1e-6).message
    assert not dpo.loss_relation("c", _dpo_record(loss_type="bogus"), curve, 1e-6).passed
    assert "logged no loss" in dpo.loss_relation("c", rec, [{"step": 2}], 1e-6).message
    own = {"policy": [-10.0, -12.0], "reference": [-11.0, -11.0], "completion_tokens": [4, 2]}
    assert dpo.logps_relation("c", _dpo_record(own=own), 1e-6).passed
    shifted = {"policy": [-8.0, -12.0], "reference": [-11.0, None], "completion_tokens": [3, 2]}
    bad = dpo.logps_relation("c", _dpo_record(own=shifted), 1e-6)
    assert not bad.passed and "a prompt token counted" in bad.message and "4 vs 3" in bad.message
    assert "not recorded" in dpo.logps_relation("c", _dpo_record(), 1e-6).message


def _kto_record(kl_rows_matched: int = 0, undesirable: float = 1.0) -> Recorded:
    calls = [Call(False, kl_rows_matched, [-5.0, -6.0]), Call(True, 0, [-9.0, -11.0]),
             Call(False, kl_rows_matched, [-5.5, -5.5]), Call(False, 0, [-10.0, -10.0])]
    return Recorded({"beta": 1.0, "desirable_weight": 1.0, "undesirable_weight": undesirable, "loss_type": "kto"},
                    [MicroBatch(1, 0.0, calls, [3, 3], label=[True, False])])


def test_the_kto_relations_on_crafted_records():
    kl = d.kto_kl([-5.0, -6.0], [-5.5, -5.5])  # mean(0.5, -0.5) = 0
    loss = d.kto_loss([1.0, -1.0], [True, False], kl, 1.0, 1.0, 2.0)
    curve = [{"step": 1, "loss": loss, "kl": kl}]
    assert kto.kl_relation("c", _kto_record(), curve, 1e-6).passed
    assert kto.loss_relation("c", _kto_record(undesirable=2.0), curve, 1e-6).passed
    bad = kto.loss_relation("c", _kto_record(undesirable=1.0), curve, 1e-6)
    assert not bad.passed and "a weight ignored" in bad.message
    matched = kto.kl_relation("c", _kto_record(kl_rows_matched=2), curve, 1e-6)
    assert not matched.passed and "matched pairs" in matched.message
    unclamped = kto.kl_relation("c", _kto_record(), [{"step": 1, "loss": loss, "kl": -0.3}], 1e-6)
    assert not unclamped.passed and "not clamped" in unclamped.message
    # the loss relation takes the KL estimate as logged (one cause, one failing relation)
    with_logged = d.kto_loss([1.0, -1.0], [True, False], -0.3, 1.0, 1.0, 2.0)
    assert kto.loss_relation("c", _kto_record(undesirable=2.0), [{"step": 1, "loss": with_logged, "kl": -0.3}],
                             1e-6).passed
    wrong_order = Recorded({"beta": 1.0}, [MicroBatch(1, 0.0, [Call(True, 0, [0.0])], [1], label=[True])])
    assert "trl's order" in kto.kl_relation("c", wrong_order, curve, 1e-6).message


def test_the_reward_relations_on_crafted_records():
    doc = {"settings": {"center_rewards_coefficient": 0.1},
           "micro_batches": [{"step": 1, "loss": 0.0, "forwards": 1, "chosen": [1.0], "rejected": [0.0], "pairs": 1}],
           "padding": {"alone": [0.5], "right": [0.5], "left": [0.5000001], "lengths": [5], "longest": 9}}
    centred = math.log(1 + math.exp(-1)) + 0.1

    def computed(loss):
        return {**doc, "micro_batches": [{**doc["micro_batches"][0], "loss": loss}]}

    assert reward.loss_relation("c", computed(centred), 1e-6).passed
    bad = reward.loss_relation("c", computed(centred - 0.1), 1e-6)
    assert not bad.passed and "centring term ignored" in bad.message
    # the loss trl computed, unrounded, is compared: a loss logged to 4 decimals (transformers < 5) plays no part
    assert reward.loss_relation("c", computed(centred + 2e-6), 1e-6).passed is False
    unrecorded = {**doc, "micro_batches": [{k: v for k, v in doc["micro_batches"][0].items() if k != "loss"}]}
    assert "no computed loss" in reward.loss_relation("c", unrecorded, 1e-6).message
    assert reward.padding_relation("c", doc, 1e-6).passed
    last = {**doc, "padding": {**doc["padding"], "right": [0.8]}}
    bad = reward.padding_relation("c", last, 1e-6)
    assert not bad.passed and "last non-padding token" in bad.message and "right-padded" in bad.message
    assert not reward.padding_relation("c", {}, 1e-6).passed
    assert not reward.loss_relation("c", None, 1e-6).passed


def test_a_lost_or_malformed_record_is_a_failure_not_a_pass():
    assert "missing" in read_recorded({}).why and read_recorded({}).judgeable
    assert "malformed" in read_recorded({"by_definition": {"settings": {}, "micro_batches": [{"step": 1}]}}).why


def test_rpo_weights_and_precomputed_references_on_crafted_records():
    """RPO's loss weights enter the loss relation (swapped, it fails naming them); with precompute_ref_log_probs
    the reference is the batch's precomputed columns, held to the suite's own reference forward at step 1."""
    calls = [Call(True, 2, [-10.0, -12.0])]
    own = {"policy": [-10.0, -12.0], "reference": [-11.0, -11.0], "completion_tokens": [4, 2]}
    settings = {"beta": 0.1, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.2], "label_smoothing": 0.0}
    rec = Recorded(settings, [MicroBatch(1, 0.0, calls, [4, 2], own=own, reference=[-11.0, -11.0])])
    curve = [{"step": 1, "loss": sp(-0.2) + 0.2 * 10 / 4}]
    assert dpo.loss_relation("c", rec, curve, 1e-6).passed and dpo.logps_relation("c", rec, 1e-6).passed
    swapped = dpo.loss_relation("c", rec, [{"step": 1, "loss": 0.2 * sp(-0.2) + 10 / 4}], 1e-6)
    assert not swapped.passed and "loss weights swapped" in swapped.message
    rolled = Recorded(settings, [MicroBatch(1, 0.0, calls, [4, 2], own=own, reference=[-11.0, -10.5])])
    bad = dpo.logps_relation("c", rolled, 1e-6)
    assert not bad.passed and "misaligned rows" in bad.message and "reference row 1" in bad.message
    both = Recorded(settings, [MicroBatch(1, 0.0, calls + [Call(False, 2, [-11.0, -11.0])], [4, 2],
                                          reference=[-11.0, -11.0])])
    assert "although the reference log-probabilities were precomputed" in dpo.loss_relation("c", both, curve, 1e-6).message
    parsed = read_recorded({"by_definition": {"settings": settings, "micro_batches": [
        {"step": 1, "loss": 0.0, "calls": [{"grad": True, "rows_of_batch": 2, "logps": [-10.0, -12.0]}],
         "completion_tokens": [4, 2], "reference": [-11.0, -11.0]}]}})
    assert parsed.batches[0].reference == [-11.0, -11.0]


def test_a_case_may_turn_dpo_rewards_rise_off_and_no_other_check(tmp_path):
    """DiscoPOP and APO-down (cases/dpo_options.yaml) lower the margin first by their definition or measurement:
    their cases leave `dpo_rewards_rise` unplanned; every other DPO check and relation stays."""
    from suite.cases import load_cases
    from suite.train.backends.dpo import checks as dpo_checks
    from suite.train.backends.registry import backend_for
    from tests.helpers import write_cases

    on, off = load_cases(write_cases(tmp_path, """
        matrix:
          - {models: [tiny-llama], trainers: [dpo], methods: [lora], datasets: [preference]}
          - {models: [tiny-llama], trainers: [dpo], methods: [full], datasets: [preference],
             checks: {dpo_rewards_rise: false}}
        """))
    planned_on, planned_off = backend_for(on).checks_for(on), backend_for(off).checks_for(off)
    assert dpo_checks.REWARDS_RISE in planned_on and dpo_checks.REWARDS_RISE not in planned_off
    assert set(planned_on) - set(planned_off) == {dpo_checks.REWARDS_RISE}


def test_dpo_loss_types_after_trls_floor_skip_naming_the_release(monkeypatch):
    """cases/dpo_options.yaml on the floor stack (trl 0.20, transformers 4.56) skips naming the release: the
    relations' record needs trl 1.15's fused LM head, aot_unpaired trl 0.28 (aot_pair before), sigmoid_norm 1.4."""
    from suite.cases import load_cases
    from suite.paths import ROOT
    from suite.train import compat
    from suite.train.backends.registry import backend_for

    floors = {"trl": "0.20.0", "transformers": "4.56.2", "peft": "0.15.0"}
    monkeypatch.setattr(compat, "package_version", lambda name: floors.get(name, "99"))
    cases = {c.option: c for c in load_cases(ROOT / "cases") if c.option and c.trainer == "dpo"}
    reasons = {o: compat.cannot_express(c, backend_for(c).version_needs(c)) for o, c in cases.items()}
    record = ("trl>=1.15.0 for the preference relations judged by definition (the recorder reads trl's fused LM "
              "head's log-probabilities) (installed: 0.20.0)")
    assert reasons.pop("loss_type:aot_unpaired") == [record, "trl>=0.28.0 for DPO's loss_type aot_unpaired (trl "
                                                             "before 0.28 names it aot_pair) (installed: 0.20.0)"]
    assert reasons.pop("loss_type:sigmoid_norm") == [record, "trl>=1.4.0 for DPO's loss_type sigmoid_norm "
                                                             "(installed: 0.20.0)"]
    assert len(reasons) == 14 and all(r == [record] for r in reasons.values()), reasons
    monkeypatch.setattr(compat, "package_version", lambda name: {**floors, "trl": "1.16.0"}.get(name, "99"))
    assert not any(compat.cannot_express(c, backend_for(c).version_needs(c)) for c in cases.values())


def test_a_release_the_recorder_cannot_read_is_not_judged_and_a_lost_record_still_fails():
    """Before trl 1.15 neither DPO nor KTO passes fused_lm_head, which the recorder reads: the child says so
    (`not_judged` in resolved.by_definition) and every preference relation reports not judged by name, counted
    apart in the reports. A record lost otherwise (the can-fail counterpart) is still a failure."""
    from types import SimpleNamespace

    from suite.train.backends.dpo.relations import RELATIONS as DPO
    from suite.train.backends.kto.relations import RELATIONS as KTO

    case = SimpleNamespace(id="c", method="lora", checks=SimpleNamespace(**{
        f: 1e-5 for f in ("dpo_logps_atol", "preference_loss_atol", "preference_rewards_atol")}))
    why = "needs trl>=1.15.0 for the preference relations by definition (installed: 0.20.0)"
    said = SimpleNamespace(resolved={"by_definition": {"not_judged": why}}, loss_curve=[], losses=[])
    lost = SimpleNamespace(resolved={}, loss_curve=[], losses=[])
    for check in (*DPO, *KTO):
        out = check.evaluate(case, said, None, None)
        assert out.passed and not out.judged and why in out.message, check.name
        failed = check.evaluate(case, lost, None, None)
        assert not failed.passed and failed.judged and "missing" in failed.message, check.name


def test_before_trl_1_15_the_child_installs_no_recorder_and_says_why(monkeypatch):
    """trl 0.20's DPOTrainer has no `_compute_loss` for the recorder to wrap (the DPO cases errored on the floor
    stack with AttributeError): below 1.15 no recorder is installed and describe() says why; from 1.15 it is."""
    from types import SimpleNamespace

    from suite.train import compat
    from suite.train.backends.dpo.backend import BACKEND

    monkeypatch.setattr(compat, "package_version", lambda name: "0.20.0" if name == "trl" else "99")
    trainer = SimpleNamespace(args=SimpleNamespace())
    from suite.train.backends.sft.backend import HFSFTTrainer

    monkeypatch.setattr(HFSFTTrainer, "instrument", lambda self, t: "counter")  # the token counter, not under test
    assert BACKEND.instrument(trainer) == "counter" and not hasattr(trainer, "suite_logps_recorder")
    said = BACKEND.describe(trainer)["by_definition"]["not_judged"]
    assert said.startswith("needs trl>=1.15.0") and "installed: 0.20.0" in said
    monkeypatch.setattr(compat, "package_version", lambda name: "1.16.0" if name == "trl" else "99")
    assert BACKEND.describe(trainer) == {}  # a release it reads, and no recorder: nothing to say (a lost record fails)


def test_trl_0_20s_reward_model_two_forwards_are_paired_and_its_unlogged_accuracy_not_judged():
    """trl before 0.24 scores the chosen rows in one forward and the rejected in another, and logs no pairwise
    accuracy or margin in training (read in the release wheels; measured on the floor stack): the recorder pairs
    the two forwards, and `reward_pairs_rise` reports not judged where the child says its trl logs none."""
    from types import SimpleNamespace

    import torch

    from suite.train.backends.reward import checks as reward_checks
    from suite.train.backends.reward.recorder import ScoreRecorder

    class Model(torch.nn.Module):
        def forward(self, x):
            return SimpleNamespace(logits=x)

    model = Model().train()

    def two_forwards(m, inputs, return_outputs=False, **kw):  # trl 0.20's compute_loss, in shape
        chosen, rejected = m(inputs["chosen"]).logits, m(inputs["rejected"]).logits
        return -torch.nn.functional.logsigmoid(chosen - rejected).mean()

    trainer = SimpleNamespace(args=SimpleNamespace(max_steps=3), state=SimpleNamespace(global_step=0), model=model,
                              compute_loss=two_forwards)
    rec = ScoreRecorder(trainer)
    trainer.compute_loss(model, {"chosen": torch.tensor([[1.0], [0.5]]), "rejected": torch.tensor([[0.0], [0.25]])})
    doc = {"settings": {}, **rec.record()}
    step = doc["micro_batches"][0]
    assert step["forwards"] == 2 and step["chosen"] == [1.0, 0.5] and step["rejected"] == [0.0, 0.25]
    assert reward.loss_relation("c", doc, 1e-6).passed
    three = {**doc, "micro_batches": [{**step, "forwards": 3}]}  # the can-fail counterpart: forwards it cannot pair
    assert not reward.loss_relation("c", three, 1e-6).passed

    case = SimpleNamespace(id="c", checks=SimpleNamespace(loss_window=2))
    said = reward_checks._pairs_rise(case, SimpleNamespace(resolved={"pairs_not_logged": "needs trl>=0.24.0"},
                                                           loss_curve=[]), None, None)
    assert said.passed and not said.judged and "needs trl>=0.24.0" in said.message
    lost = reward_checks._pairs_rise(case, SimpleNamespace(resolved={}, loss_curve=[]), None, None)
    assert not lost.passed  # a release that logs them and a curve without them still fails
