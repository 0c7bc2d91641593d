"""The distillation checks (suite/train/backends/distill/), on real tiny runs of trl's DistillationTrainer (full,
forward KL: beta 0, as cases/distill.yaml's first case): a clean run passes them, and each declared fault fails
its check alone — beta read as 1 - beta (the loss by definition), the gradient reversed (the held-out divergence
does not fall; the logged loss still is its definition). Then the formulas on crafted values."""
from __future__ import annotations

import math

import pytest

from suite.train.backends.distill.checks import divergence_falls
from suite.train.backends.distill.relations import divergence, loss_relation, read
from tests.helpers import assert_fails_alone, check_outcomes

pytestmark = pytest.mark.xdist_group("distill-faults")
MATRIX = ("matrix:\n  - {models: [tiny-llama], trainers: [distill], methods: [full], datasets: [prompt_only], "
          "training: {learning_rate: 1.0e-3, max_steps: 20, batch_size: 8, extra: {beta: 0.0}}}\n")
FAULTS = ("", "distill_beta_flipped", "distill_gradient_reversed")
OWN = ("distill_divergence_falls", "distill_loss_by_definition")


@pytest.mark.slow
def test_a_clean_distillation_run_passes_its_checks(records):
    rec = records["clean"]
    checks = check_outcomes(rec)
    assert all(checks[name] for name in OWN), [c["message"] for c in rec.checks if c["name"] in OWN]
    assert checks["loss_decreases"] and checks["reload_logits"]
    doc = rec.resolved["distillation"]
    assert doc["settings"]["beta"] == 0.0 and {b["step"] for b in doc["micro_batches"]} == {1, 2, 3}


# fault -> (the check it must fail, the checks it cannot touch)
FAULT_CHECKS = {
    "distill_beta_flipped": ("distill_loss_by_definition", ("distill_divergence_falls", "reload_logits")),
    "distill_gradient_reversed": ("distill_divergence_falls", ("distill_loss_by_definition", "reload_logits")),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULT_CHECKS)
def test_each_fault_fails_its_check_alone(records, fault):
    assert_fails_alone(records[fault], fault, *FAULT_CHECKS[fault])


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_the_divergence_on_crafted_logits():
    s, t = [0.0, 1.0, 2.0], [2.0, 0.0, -1.0]
    ps = [math.exp(x) / sum(math.exp(y) for y in s) for x in s]
    pt = [math.exp(x) / sum(math.exp(y) for y in t) for x in t]
    assert divergence(s, t, 0.0, 1.0) == pytest.approx(_kl(pt, ps))  # forward KL
    assert divergence(s, t, 1.0, 1.0) == pytest.approx(_kl(ps, pt))  # reverse KL
    m = [(a + b) / 2 for a, b in zip(ps, pt)]
    assert divergence(s, t, 0.5, 1.0) == pytest.approx((_kl(pt, m) + _kl(ps, m)) / 2)  # the JSD
    assert divergence(s, t, 0.5, 1.0) == pytest.approx(divergence(t, s, 0.5, 1.0))  # symmetric at 0.5
    assert divergence(s, s, 0.3, 2.0) == pytest.approx(0.0, abs=1e-12)
    assert divergence(s, t, 0.0, 2.0) == pytest.approx(divergence([x / 2 for x in s], [x / 2 for x in t], 0.0, 1.0))


def _doc(beta: float, logged: float) -> tuple[dict, list[dict]]:
    doc = {"settings": {"beta": beta, "temperature": 1.0, "recorded_steps": 1}, "heldout": {},
           "micro_batches": [{"step": 1, "student": [[0.0, 1.0]], "teacher": [[1.0, 0.0]]}]}
    return doc, [{"step": 1, "loss": logged}]


def test_the_loss_relation_on_crafted_values():
    defined = divergence([0.0, 1.0], [1.0, 0.0], 0.0, 1.0)
    doc, curve = _doc(0.0, defined)
    assert loss_relation("c", doc, curve, 1e-6).passed
    doc, curve = _doc(0.0, defined + 1e-3)
    bad = loss_relation("c", doc, curve, 1e-6)
    assert not bad.passed and "beta read otherwise" in bad.message
    doc["micro_batches"] = []
    assert not loss_relation("c", doc, curve, 1e-6).passed  # nothing recorded is no pass
    assert isinstance(read({}), str) and "no logits" in read({})


def test_the_fall_on_crafted_values():
    near, far = {"student": [[0.0, 1.0]], "teacher": [[0.1, 0.9]]}, {"student": [[0.0, 1.0]], "teacher": [[1.0, 0.0]]}
    doc = {"settings": {"beta": 0.5, "temperature": 1.0}, "heldout": {"before": far, "after": near}}
    assert divergence_falls("c", doc, 0.1).passed
    doc["heldout"] = {"before": near, "after": far}
    rose = divergence_falls("c", doc, 0.1)
    assert not rose.passed and "did not move towards the teacher" in rose.message
    doc["heldout"] = {"before": {"student": [], "teacher": []}, "after": near}
    assert not divergence_falls("c", doc, 0.1).passed  # nothing held out is no pass
