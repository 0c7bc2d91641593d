"""Gradient accumulation normalises the loss over the tokens of the whole accumulated batch."""
from __future__ import annotations

import pytest

from suite.invariants import runs
from suite.invariants.relations import RELATIONS
from suite.matrix.axes import FORMAT
from suite.train.backends.registry import BACKENDS

pytestmark = [pytest.mark.slow, pytest.mark.invariant, pytest.mark.tiny, pytest.mark.llama]
METHODS = [pytest.param("full", marks=pytest.mark.full),
           pytest.param("lora", marks=[pytest.mark.lora, pytest.mark.adapter])]


@pytest.mark.parametrize("method", METHODS)
def test_batch_and_accumulation_agree(method, tmp_path, invariant):
    invariant.holds(runs.measure_grad_accum(method, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_per_micro_batch_mean(tmp_path, invariant):
    verdicts = runs.measure_grad_accum("lora", tmp_path, trainer_cls=runs.per_micro_batch_mean_trainer())
    invariant.breaks(verdicts, "grad_accum.loss")
    invariant.breaks(verdicts, "grad_accum.weights")


def declaring(relation: str) -> list:
    """The trainers that declare `<trainer>.<relation>` (suite/invariants/relations.py), one param each."""
    names = sorted({n.split(".")[0] for n in RELATIONS if n.endswith(f".{relation}")})
    assert names, f"no trainer declares {relation}"
    return [pytest.param(n, marks=getattr(pytest.mark, n)) for n in names]


TRAINERS = declaring("grad_accum.weights")


def breaking(trainer: str):
    """What breaks a trainer's relation on purpose. Summed micro-batches (the whole accumulated loss scaled)
    move the preference trainers' weights; a generating trainer's (its data is prompts) move not (Adam and the
    clipping of the larger gradient norm undo a scale over 3 steps), a micro-batch counted twice turns them."""
    generates = next(FORMAT[b.formats[0]].generates for b in BACKENDS if b.trainer == trainer)
    return runs.first_micro_batch_twice if generates else runs.summed_micro_batches


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.parametrize("trainer", TRAINERS)
def test_each_trainer_s_batch_and_accumulation_agree(tmp_path, invariant, trainer):
    invariant.holds(runs.measure_trainer_grad_accum(trainer, tmp_path))


@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.parametrize("trainer", TRAINERS)
def test_can_fail_each_trainer_s_accumulation(tmp_path, invariant, trainer):
    verdicts = runs.measure_trainer_grad_accum(trainer, tmp_path, tamper=breaking(trainer))
    for name in (f"{trainer}.grad_accum.loss", f"{trainer}.grad_accum.weights"):
        if name in RELATIONS:  # RLOO declares the weights only (runs.measure_trainer_grad_accum)
            invariant.breaks(verdicts, name)
