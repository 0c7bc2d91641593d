"""The trained model's own relations, judged on every causal-LM case from what its child measured
(suite/train/modeling.py), with no baseline: `padding_invariance` (a row's loss alone equals its loss right-,
left- and collator-padded beside longer rows), and for a mixture of experts `moe_aux_by_definition` (the model's
auxiliary loss is the load-balancing loss of its router logits, by the suite's own formula) and
`router_logits_are_logits` (no layer records probabilities where its router logits belong). Each failure names
the cause. The bounds are CheckSpec's `padding_atol*` and `moe_aux_rtol` (what they were measured on is there); a
precision or device they were not measured on is reported not judged, never passed silently.
"""
from __future__ import annotations

import math
from typing import Callable

from suite.checkresult import CheckResult, raised_result
from suite.matrix.spec import Case
from suite.train.modeling import ModelRelations, MoeSeen, PaddingSeen
from suite.train.payload import Payload

# The judge computes no expected value: it compares the numbers the child computed with the suite's own formulas,
# and suite/train/modeling.py, which holds those, declares the library functions each relation must not call.
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "padding_invariance": (), "moe_aux_by_definition": (), "router_logits_are_logits": (),
}
NAMES = tuple(FORBIDDEN_ORACLES)
MEASURED_ON = ("cpu", "float32")  # the device and logits' dtype the bounds were measured on


def padding_bound(case: Case, rel: ModelRelations) -> float | None:
    """The case's bound for the model's device, precision and base, or None: never measured there."""
    if (rel.device, rel.dtype) != MEASURED_ON:
        return None
    return case.checks.padding_atol if rel.bits is None else case.checks.padding_atol_quantized


def _worst(values: list[float] | None, against: list[float] | None) -> tuple[float, int]:
    """The largest |difference| and its row (nan anywhere counts as infinite)."""
    if not values or not against:
        return 0.0, -1
    offs = [abs(a - b) if math.isfinite(a) and math.isfinite(b) else math.inf for a, b in zip(values, against)]
    i = max(range(len(offs)), key=offs.__getitem__)
    return offs[i], i


def _cause(variant: str, p: PaddingSeen) -> str:
    if variant == "collated" and p.labelled_pads:
        return (f"the trainer's collator labels {p.labelled_pads} padding positions (their label is the pad id, not "
                f"-100): the loss counts the padding")
    if variant == "left":
        return "padding is attended (the attention mask is not applied): rows padded in front see the pads"
    return ("padding changes a row's loss (the attention mask or the labels of padding are not applied as "
            "documented)")


def check_padding(case: Case, rel: ModelRelations) -> CheckResult:
    p = rel.padding
    bound = padding_bound(case, rel)
    offs = {"right-padded": _worst(p.right, p.alone), "left-padded": _worst(p.left, p.alone),
            "collated": _worst(p.collated, p.collated_alone)}
    variant = max(offs, key=lambda k: offs[k][0])
    worst, row = offs[variant]
    collator = (f"the trainer's collator padded {p.collated_side}" if p.collated is not None
                else (p.collator_not_used or "the trainer's collator not measured"))
    collated = f"{offs['collated'][0]:.3g} nats" if p.collated is not None else "not measured"
    detail = (f"rows of {p.lengths} tokens; max difference right {offs['right-padded'][0]:.3g}, left "
              f"{offs['left-padded'][0]:.3g} nats, collated {collated}; {collator}")
    if p.labelled_pads and (bound is None or worst <= bound):  # a cause seen whatever the size of its effect
        variant, row, worst = "collated", offs["collated"][1], max(worst, offs["collated"][0])
        bound = 0.0 if bound is None else bound
    if bound is None:
        return CheckResult("padding_invariance", True, f"{case.id}: not judged: no bound measured for {rel.dtype} "
                           f"logits on {rel.device}" + (f" ({rel.bits}-bit base)" if rel.bits else "")
                           + f" ({detail})", value=worst, judged=False)
    if worst > bound or p.labelled_pads:
        return CheckResult("padding_invariance", False, f"{case.id}: the loss of a row ({p.lengths[row]} tokens) "
                           f"changes with the padding beside it by {worst:.3g} nats ({variant}): "
                           f"{_cause(variant.split('-')[0], p)} ({detail}; bound {bound:g})", value=worst, bound=bound)
    return CheckResult("padding_invariance", True, f"{case.id}: each row's loss is the same alone and padded within "
                       f"{worst:.3g} nats ({detail}; bound {bound:g})", value=worst, bound=bound)


def _named_variant(m: MoeSeen, rtol: float) -> str:
    """Which known wrong reading of the definition the model's auxiliary loss equals, if any."""
    for name, value in m.variants.items():
        if m.model_aux is not None and abs(m.model_aux - value) <= rtol * max(abs(value), 1e-12):
            return {"top 1": f"it equals the formula with the top 1 expert counted, not the config's top "
                             f"{m.top_k}",
                    "softmax twice": "it equals the formula with the router probabilities softmaxed a second "
                                     "time"}.get(name, f"it equals the formula read as {name}")
    return "it equals no known misreading of the formula"


def check_aux(case: Case, rel: ModelRelations) -> CheckResult:
    m, rtol = rel.moe, case.checks.moe_aux_rtol
    what = f"{m.experts} experts, top {m.top_k}, {m.layers} layers, {m.tokens} unpadded tokens"
    if m.model_aux is None:
        return CheckResult("moe_aux_by_definition", False, f"{case.id}: the forward with output_router_logits "
                           f"returned no aux_loss: the model does not compute its load-balancing loss ({what})")
    off = abs(m.model_aux - m.own_aux) / max(abs(m.own_aux), 1e-12)
    if rel.dtype != MEASURED_ON[1] or rel.device != MEASURED_ON[0]:
        return CheckResult("moe_aux_by_definition", True, f"{case.id}: not judged: no bound measured for {rel.dtype} "
                           f"router logits on {rel.device} (the model's {m.model_aux:.6g}, by definition "
                           f"{m.own_aux:.6g}, {off:.3g} relative)", value=off, judged=False)
    if not math.isfinite(off) or off > rtol:
        return CheckResult("moe_aux_by_definition", False, f"{case.id}: the model's auxiliary loss is "
                           f"{m.model_aux:.6g}, the load-balancing loss of its router logits by definition "
                           f"(Switch Transformer, top-k from the config) is {m.own_aux:.6g}, {off:.3g} relative: the "
                           f"model computes its load-balancing loss otherwise; {_named_variant(m, rtol)} ({what}; "
                           f"bound {rtol:g})", value=off, bound=rtol)
    return CheckResult("moe_aux_by_definition", True, f"{case.id}: the model's auxiliary loss {m.model_aux:.6g} is "
                       f"the load-balancing loss of its router logits within {off:.3g} relative ({what}; bound "
                       f"{rtol:g})", value=off, bound=rtol)


def check_logits(case: Case, rel: ModelRelations) -> CheckResult:
    m = rel.moe
    if m.probability_layers:
        return CheckResult("router_logits_are_logits", False, f"{case.id}: {len(m.probability_layers)} of {m.layers} "
                           f"layers ({', '.join(m.probability_layers[:4])}) record router logits whose rows are "
                           f"already probabilities (non-negative, summing to 1): the router returns its softmax "
                           f"where its logits belong, and the load-balancing loss softmaxes them again",
                           value=float(len(m.probability_layers)), bound=0.0)
    return CheckResult("router_logits_are_logits", True, f"{case.id}: the router logits of all {m.layers} layers are "
                       f"logits (no layer's rows are probabilities)", value=0.0, bound=0.0)


def planned(case: Case, payload: Payload) -> list[tuple[str, Callable[[], CheckResult]]]:
    """The model's relations of a case: none where the child measured none (not a causal LM, ddp/fsdp, unsloth,
    or a payload from before them); a measurement that raised fails padding_invariance with its exception."""
    rel = payload.model_relations
    if "model_relations" in payload.raised:
        return [("padding_invariance", lambda: raised_result("padding_invariance", case.id,
                                                             "measuring the trained model's relations",
                                                             payload.raised["model_relations"]))]
    if rel is None:
        return []
    out: list[tuple[str, Callable[[], CheckResult]]] = []
    if rel.padding is not None:
        out.append(("padding_invariance", lambda: check_padding(case, rel)))
    if rel.moe is not None:
        out += [("moe_aux_by_definition", lambda: check_aux(case, rel)),
                ("router_logits_are_logits", lambda: check_logits(case, rel))]
    return out
