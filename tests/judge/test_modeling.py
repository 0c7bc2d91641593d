"""The trained model's relations (suite/judge/modeling.py) on crafted records: each passes on a clean record, fails
with its cause named on a record with one thing changed, says "not judged" where no bound was measured, and the
suite's own formulas (suite/train/modeling.py) agree with hand-worked values. The real runs are in
tests/train/test_model_relations.py."""
from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest

from suite.judge import modeling as judge
from suite.matrix.spec import CheckSpec
from suite.train import modeling
from suite.train.modeling import ModelRelations, MoeSeen, PaddingSeen

ALONE = [3.1, 2.5, 2.9, 3.0]


def case():
    return SimpleNamespace(id="c", checks=CheckSpec())


def record(left_shift: float = 0.0, labelled: int = 0, collated_shift: float = 0.0, aux: float = 2.0,
           probability_layers: tuple[str, ...] = (), dtype: str = "float32", device: str = "cpu",
           bits: int | None = None) -> ModelRelations:
    padding = PaddingSeen([3, 51, 12, 9], list(ALONE), list(ALONE), [ALONE[0] + left_shift] + ALONE[1:],
                          [ALONE[0] + collated_shift] + ALONE[1:], list(ALONE), "right", labelled)
    moe = MoeSeen(4, 2, 2, 75, aux, 2.0, list(probability_layers), {"top 1": 1.0, "softmax twice": 1.9993})
    return ModelRelations(dtype, device, bits, padding, moe)


def test_clean_records_pass_every_relation():
    rel = record()
    for check in (judge.check_padding, judge.check_aux, judge.check_logits):
        result = check(case(), rel)
        assert result.passed, result.message


def test_padding_attended_fails_naming_the_mask():
    result = judge.check_padding(case(), record(left_shift=0.14))
    assert not result.passed
    assert "by 0.14 nats (left-padded)" in result.message and "attention mask is not applied" in result.message


def test_labelled_padding_fails_naming_the_collator_even_when_small():
    result = judge.check_padding(case(), record(labelled=12, collated_shift=1e-7))
    assert not result.passed
    assert "collator labels 12 padding positions" in result.message


def test_a_nan_loss_is_no_pass():
    result = judge.check_padding(case(), record(left_shift=math.nan))
    assert not result.passed


@pytest.mark.parametrize("where", [{"dtype": "bfloat16"}, {"device": "cuda"}])
def test_no_bound_for_a_precision_is_reported_not_judged(where):
    result = judge.check_padding(case(), record(left_shift=0.5, **where))
    assert result.passed and not result.judged and "not judged: no bound measured for" in result.message
    aux = judge.check_aux(case(), record(aux=1.0, **where))
    assert aux.passed and not aux.judged and "not judged" in aux.message


def test_a_quantized_base_has_its_own_bound():
    c = SimpleNamespace(id="c", checks=replace(CheckSpec(), padding_atol_quantized=1.0))
    assert judge.check_padding(c, record(left_shift=0.5, bits=4)).passed
    assert not judge.check_padding(case(), record(left_shift=0.5)).passed


@pytest.mark.parametrize("aux,named", [(1.0, "top 1 expert counted"), (1.9993, "softmaxed a second time"),
                                       (2.5, "no known misreading")])
def test_an_aux_loss_off_its_definition_names_the_misreading(aux, named):
    result = judge.check_aux(case(), record(aux=aux))
    assert not result.passed and named in result.message


def test_router_probabilities_fail_are_logits():
    result = judge.check_logits(case(), record(probability_layers=("layer 0", "layer 1")))
    assert not result.passed and "router returns its softmax" in result.message


def test_planned_a_raise_fails_and_nothing_measured_plans_nothing():
    payload = SimpleNamespace(model_relations=None, raised={"model_relations": "RuntimeError: boom"})
    (name, run), = judge.planned(case(), payload)
    assert name == "padding_invariance" and not run().passed and "boom" in run().message
    assert judge.planned(case(), SimpleNamespace(model_relations=None, raised={})) == []
    names = [n for n, _ in judge.planned(case(), SimpleNamespace(model_relations=record(), raised={}))]
    assert names == ["padding_invariance", "moe_aux_by_definition", "router_logits_are_logits"]


def test_the_record_round_trips():
    rel = record(labelled=3)
    assert ModelRelations.from_dict(rel.to_dict()) == rel


# -- the suite's own formulas ----------------------------------------------------------------------------------

def test_balance_loss_by_hand():
    """num_experts x sum_e f_e P_e worked by hand for two rows over 2 experts, top 1."""
    import torch

    logits = (torch.tensor([[math.log(3.0), 0.0], [0.0, math.log(3.0)]]),)  # probabilities (.75,.25), (.25,.75)
    # f = (1/2, 1/2), P = (1/2, 1/2): 2 x (1/4 + 1/4) = 1
    assert modeling.balance_loss(logits, 2, 1) == pytest.approx(1.0)
    skewed = (torch.tensor([[math.log(3.0), 0.0], [math.log(3.0), 0.0]]),)  # both choose expert 0
    assert modeling.balance_loss(skewed, 2, 1) == pytest.approx(2 * 0.75)
    # the second row padded out: only row 1 counts (f = (1, 0), P = (.75, .25))
    assert modeling.balance_loss(logits, 2, 1, torch.tensor([[1, 0]])) == pytest.approx(1.5)


def test_probability_rows_and_padded_batches():
    import torch

    logits = torch.tensor([[0.3, -1.2, 2.0, 0.1], [1.5, 0.2, -0.4, 0.0]])
    assert modeling.probability_rows((logits, torch.softmax(logits, -1))) == ["layer 1"]
    left = modeling.padded([[5, 6, 7], [8]], 0, "left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left["labels"].tolist() == [[-100, 6, 7], [-100, -100, -100]]  # a row's first label is no target
    right = modeling.padded([[5, 6, 7], [8]], 0, "right")
    assert right["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
