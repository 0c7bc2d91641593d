"""The reward model by definition: the loss trl computed is the pairwise loss of the recorded scores (with
`center_rewards_coefficient` when set), and the score is padding-invariant (the same text alone, right-padded
and left-padded beside a longer one scores the same: the score is read at the last non-padding token)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suite.checkresult import Bounds, CheckResult
from suite.train.backends.base import TrainerCheck
from suite.train.backends.preference import definitions as d
from suite.train.backends.preference.definitions import FORBIDDEN_ORACLES  # noqa: F401 - the guard's list, re-exported
from suite.train.backends.preference.relations import KEY, bound_for, worst

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload


def loss_relation(case_id: str, doc: dict | None, atol: float) -> CheckResult:
    """The loss trl computed at each recorded micro-batch (the recorder keeps it, unrounded) against the definition
    from the same micro-batch's scores. Not the logged loss: transformers before 5 logs it rounded to 4 decimals
    (2.9e-5 off on the floor stack, over a bound of 1e-5), and the logged loss's relation to the computed one is
    the Trainer's logging, which the logged-loss invariant holds."""
    name = "reward_loss_by_definition"
    if not doc or not doc.get("micro_batches"):
        return CheckResult(name, False, f"{case_id}: the child recorded no reward scores (resolved.{KEY})")
    center = doc["settings"].get("center_rewards_coefficient")
    what = "the reward model's computed loss vs -log sigmoid(chosen - rejected)" + \
        (f" + {center:g} x mean((chosen + rejected)^2)" if center else "") + " from the recorded scores"
    diffs = []
    for b in doc["micro_batches"]:
        if b["forwards"] not in (1, 2) or not b["chosen"] or b["pairs"] > len(b["chosen"]):
            return worst(name, case_id, [], atol, what, "", f"step {b['step']}: {b['forwards']} forwards, "
                                                             f"{b['pairs']} pairs recorded (one forward of both, "
                                                             f"or one each, expected)")
        if not isinstance(b.get("loss"), (int, float)):
            return worst(name, case_id, [], atol, what, "", f"step {b['step']}: no computed loss recorded")
        defined = d.reward_loss(b["chosen"], b["rejected"], center)
        diffs.append((abs(b["loss"] - defined), f"step {b['step']}: computed {b['loss']:.6g}, defined {defined:.6g}"))
    cause = "the loss is not the pairwise loss of the scores" + \
        (" with center_rewards_coefficient (the centring term ignored?)" if center else "")
    return worst(name, case_id, diffs, atol, what, cause)


def padding_relation(case_id: str, doc: dict | None, atol: float) -> CheckResult:
    name = "reward_padding_invariance"
    what = "one text's score alone vs right- and left-padded beside a longer text"
    padded = (doc or {}).get("padding")
    if not padded or not padded.get("alone"):
        return worst(name, case_id, [], atol, what, "", "the child scored no padded batch")
    diffs = [(abs(padded[how][i] - alone), f"{how}-padded, text of {padded['lengths'][i]} tokens beside "
                                            f"{padded['longest']}: {padded[how][i]:.6g} vs alone {alone:.6g}")
             for i, alone in enumerate(padded["alone"]) for how in ("right", "left")]
    return worst(name, case_id, diffs, atol, what,
                 "the score is not taken at the last non-padding token (a wrong pooling position: the padding id "
                 "or the position the classifier reads?)")


def _loss(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    atol = bound_for("reward_loss_by_definition", case.method, bounds, case.checks.preference_loss_atol)
    return loss_relation(case.id, payload.resolved.get(KEY), atol)


def _padding(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    atol = bound_for("reward_padding_invariance", case.method, bounds, case.checks.reward_padding_atol)
    return padding_relation(case.id, payload.resolved.get(KEY), atol)


RELATIONS = (TrainerCheck("reward_loss_by_definition", _loss), TrainerCheck("reward_padding_invariance", _padding))
