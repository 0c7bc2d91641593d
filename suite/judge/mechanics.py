"""The training mechanics, judged on every case from what its child recorded (suite/train/mechanics.py),
by the suite's own formulas and with no baseline: the learning-rate schedule (`lr_schedule`), gradient
clipping (`grad_clipping`), the AdamW update (`optimizer_update`), which parameters are decayed
(`weight_decay_groups`) and, on adapter cases, LoRA's scaling (`lora_scaling`). Each failure message names
the cause. The bounds are CheckSpec's `mechanics_*` fields (suite/matrix/spec.py: what they were measured on).
"""
from __future__ import annotations

import math
from typing import Callable

from suite.checkresult import CheckResult, not_judged, raised_result
from suite.matrix.spec import Case
from suite.train.mechanics import LOW_PRECISION, Mechanics
from suite.train.payload import Payload

# What each relation must not call to compute what it expects (the library code it judges); the lead's
# guard test scans the judge and the recorder for these names.
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "lr_schedule": ("transformers.optimization.get_scheduler", "transformers.optimization.get_linear_schedule_with_warmup",
                    "transformers.optimization.get_cosine_schedule_with_warmup",
                    "transformers.optimization.get_constant_schedule_with_warmup",
                    "transformers.training_args.TrainingArguments.get_warmup_steps",
                    "torch.optim.lr_scheduler.LambdaLR.get_lr"),
    "grad_clipping": ("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.get_total_norm",
                      "accelerate.Accelerator.clip_grad_norm_", "transformers.Trainer._clip_grad_norm"),
    "optimizer_update": ("torch.optim.AdamW.step", "torch.optim.adamw.adamw", "torch.optim.adam.adam",
                         "torch._fused_adamw_"),
    "weight_decay_groups": ("transformers.Trainer.get_decay_parameter_names", "transformers.trainer_pt_utils.get_parameter_names",
                            "transformers.pytorch_utils.ALL_LAYERNORM_LAYERS"),
    "lora_scaling": ("peft.tuners.lora.layer.LoraLayer.scaling", "peft.tuners.lora.layer.LoraLayer.update_layer",
                     "peft.tuners.lora.layer.LoraLayer.set_scale", "peft.tuners.lora.layer.Linear.get_delta_weight"),
}
NAMES = tuple(FORBIDDEN_ORACLES)


def lr_factor(kind: str, step: int, total: int, warmup: int) -> float:
    """transformers' documented schedules (optimization.py's docstrings), the multiplier of the peak rate
    after `step` scheduler steps: a linear warmup over `warmup` steps, then linear decay to 0 at `total`,
    half a cosine to 0, or constant."""
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant":
        return 1.0
    if kind == "constant_with_warmup":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    if kind == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"no formula in the suite for the {kind!r} schedule (linear, cosine, constant, "
                     f"constant_with_warmup)")


def warmup_steps(args: dict, total: int) -> int:
    """warmup_steps as transformers documents it: a count from 1 up, a fraction of max_steps below 1
    (warmup_ratio, where the installed release still has it, when warmup_steps is 0)."""
    ws = float(args.get("warmup_steps") or 0)
    ratio = float(args.get("warmup_ratio") or 0)
    if ws >= 1:
        return int(ws)
    return math.ceil(total * (ws or ratio))


def clipped(pre: float, max_norm: float) -> float:
    """The norm after clipping at max_norm, as torch documents clip_grad_norm_: scaled by
    max_norm / (norm + 1e-6) where that is below 1."""
    return pre * min(1.0, max_norm / (pre + 1e-6))


def adamw_update_ok(rel: float, bound: float) -> bool:
    return math.isfinite(rel) and rel <= bound


def expected_decay(kind: str, weight_decay: float) -> float:
    """The rule transformers documents (and the suite states in its own words): every weight decays at the
    configured rate except biases and normalisation weights, which never decay."""
    return 0.0 if kind in ("bias", "norm") else weight_decay


def lora_scale(alpha: float, r: int, rslora: bool = False) -> float:
    """LoRA's scaling (Hu et al.): alpha / r; rsLoRA's (Kalajdzievski): alpha / sqrt(r)."""
    return alpha / math.sqrt(r) if rslora else alpha / r


def _low(dtypes: list[str]) -> bool:
    """bf16 or fp16 tensors: their rounding (2^-8, 2^-11) sets the bound, not fp32's."""
    return any(d in LOW_PRECISION for d in dtypes)


def _schedule(m: Mechanics) -> tuple[str, int, int, float]:
    a = m.args
    total = int(a["max_steps"])
    return str(a["lr_scheduler_type"]), total, warmup_steps(a, total), float(a["learning_rate"])


def check_lr(case: Case, payload: Payload, m: Mechanics) -> CheckResult:
    """The rate the optimizer used at its step k is peak x f(k - 1) (the scheduler has stepped k - 1 times);
    transformers 5.23 logs `learning_rate` for step k as read before the scheduler's k-th step, the same
    value (an older release that read it after stepping logs f(k): accepted, and said)."""
    kind, total, warmup, peak = _schedule(m)
    rtol = case.checks.mechanics_lr_rtol
    what = f"the {kind} schedule (warmup {warmup}, max_steps {total}, peak {peak:g})"
    worst, problems = 0.0, []
    for s in m.steps:
        want = peak * lr_factor(kind, s.step - 1, total, warmup)
        for lr in s.lrs:
            off = abs(lr - want) / peak
            worst = max(worst, off)
            if off > rtol and not problems:
                problems.append(f"the optimizer's learning rate at step {s.step} is {lr:.4g}, {what} gives "
                                f"{want:.4g}")
    logged = [(p["step"], p["learning_rate"]) for p in payload.loss_curve if "learning_rate" in p]
    offs = [abs(lr - peak * lr_factor(kind, k - 1, total, warmup)) / peak for k, lr in logged]
    after = [abs(lr - peak * lr_factor(kind, k, total, warmup)) / peak for k, lr in logged]
    note = ""
    if offs and max(offs) > rtol and max(after) <= rtol:
        note, offs = "; the logged rate is read after the scheduler stepped (an older transformers)", after
    if offs and max(offs) > rtol:
        k, lr = next((k, lr) for (k, lr), o in zip(logged, offs) if o > rtol)
        problems.append(f"the logged learning_rate at step {k} is {lr:.4g}, {what} gives "
                        f"{peak * lr_factor(kind, k - 1, total, warmup):.4g}")
    worst = max([worst] + offs)
    if not m.steps:
        problems.append("no optimizer step was recorded")
    if problems:
        return CheckResult("lr_schedule", False, f"{case.id}: " + "; ".join(problems) + ": the scheduler does not "
                           f"follow the configured schedule (max discrepancy {worst:.3g} of the peak, bound "
                           f"{rtol:g})", value=worst, bound=rtol)
    return CheckResult("lr_schedule", True, f"{case.id}: the optimizer's rate at each of {len(m.steps)} steps and "
                       f"the {len(logged)} logged rates follow {what} within {worst:.3g} of the peak (bound "
                       f"{rtol:g}){note}", value=worst, bound=rtol)


def check_clipping(case: Case, payload: Payload, m: Mechanics) -> CheckResult:
    """After clipping the norm is min(pre, max_grad_norm) (torch's documented clip) and the trainer logs the
    norm before it."""
    c = float(m.args.get("max_grad_norm") or 0)
    rtol = case.checks.mechanics_clip_rtol_low if _low(m.dtypes) else case.checks.mechanics_clip_rtol
    steps = [s for s in m.steps if s.pre_norm is not None]
    if c <= 0 or not steps:
        return not_judged("grad_clipping", case.id, f"no clipping configured (max_grad_norm {c:g}, "
                          f"{len(steps)} clipped steps recorded)")
    worst, problems = 0.0, []
    for s in steps:
        want = clipped(s.pre_norm, c)
        off = abs(s.post_norm - want) / max(want, 1e-12)
        worst = max(worst, off)
        if off > rtol and not problems:
            problems.append(f"at step {s.step} the gradient norm was {s.pre_norm:.4g} before clipping and "
                            f"{s.post_norm:.4g} after, max_grad_norm {c:g} gives {want:.4g}: the gradients are "
                            f"not clipped at max_grad_norm (they were scaled by {s.post_norm / s.pre_norm:.3g}, "
                            f"not {want / s.pre_norm:.3g})")
    logged = {p["step"]: p["grad_norm"] for p in payload.loss_curve if "grad_norm" in p}
    for s in steps:
        if s.step in logged:
            off = abs(logged[s.step] - s.pre_norm) / max(s.pre_norm, 1e-12)
            worst = max(worst, off)
            if off > rtol:
                problems.append(f"the logged grad_norm at step {s.step} is {logged[s.step]:.4g}, the norm before "
                                f"clipping {s.pre_norm:.4g}")
                break
    n = sum(s.pre_norm > c for s in steps)
    top = max(s.pre_norm for s in steps)
    evidence = (f"{n} of {len(steps)} steps clipped" if n else
                f"no step clipped (largest norm {top:.3g} <= max_grad_norm {c:g}): the relation held trivially, "
                f"weak evidence")
    if problems:
        evidence = f"{n} of {len(steps)} steps had a norm above max_grad_norm {c:g}"
        return CheckResult("grad_clipping", False, f"{case.id}: " + "; ".join(problems) + f" ({evidence}; max "
                           f"discrepancy {worst:.3g}, bound {rtol:g})", value=worst, bound=rtol)
    return CheckResult("grad_clipping", True, f"{case.id}: the norm after clipping is min(norm, {c:g}) within "
                       f"{worst:.3g} relative (bound {rtol:g}) at every step; {evidence}", value=worst, bound=rtol)


def check_update(case: Case, payload: Payload, m: Mechanics) -> CheckResult:
    """The parameters after a step are AdamW's (suite/train/mechanics.py adamw_expected) from the
    gradients, moments, rate and decay the optimizer held just before it; its betas and eps are the args'."""
    a, hyper = m.args, m.hyper
    problems = []
    betas = [float(b) for b in hyper.get("betas") or []]
    if a.get("adam_beta1") is not None and betas and betas != [float(a["adam_beta1"]), float(a["adam_beta2"])]:
        problems.append(f"the optimizer's betas are {betas}, the args say [{a['adam_beta1']}, {a['adam_beta2']}]")
    if a.get("adam_epsilon") is not None and hyper.get("eps") is not None and float(hyper["eps"]) != float(a["adam_epsilon"]):
        problems.append(f"the optimizer's eps is {hyper['eps']}, the args say {a['adam_epsilon']}")
    if m.update_not_judged:
        if not problems:
            return not_judged("optimizer_update", case.id, f"the update: {m.update_not_judged}")
        return CheckResult("optimizer_update", False, f"{case.id}: " + "; ".join(problems))
    bound = case.checks.mechanics_update_rtol
    worst = max((u.max_rel for u in m.updates), default=float("nan"))
    if not m.updates:
        problems.append("no update was recorded (steps 2 and the middle one)")
    elif not adamw_update_ok(worst, bound):
        u = max(m.updates, key=lambda u: u.max_rel)
        problems.append(f"at step {u.step} the parameters moved {u.max_rel:.3g} (relative to the update) away from "
                        f"AdamW's update (decoupled weight decay, bias correction) from the gradients and moments "
                        f"the optimizer held: the optimizer does not apply the AdamW update")
    where = ", ".join(f"step {u.step}: {u.tensors} tensors, {u.elements} elements" for u in m.updates)
    if problems:
        return CheckResult("optimizer_update", False, f"{case.id}: " + "; ".join(problems) + f" (bound {bound:g})",
                           value=worst, bound=bound)
    return CheckResult("optimizer_update", True, f"{case.id}: the update is AdamW's within {worst:.3g} of its size "
                       f"(bound {bound:g}; {where})", value=worst, bound=bound)


def check_decay(case: Case, payload: Payload, m: Mechanics) -> CheckResult:
    """Each group's weight decay, at every step, is the config's for weights and 0 for biases and norms."""
    wd = float(m.args.get("weight_decay") or 0.0)
    problems = []
    if m.unassigned:
        problems.append(f"trainable parameters in no optimizer group (they never update), e.g. {m.unassigned[0]}")
    for i, g in enumerate(m.groups):
        seen = {s.weight_decays[i] for s in m.steps if i < len(s.weight_decays)} or {g.weight_decay}
        for kind, n in g.counts.items():
            want = expected_decay(kind, wd)
            bad = [d for d in seen if abs(d - want) > 1e-12]
            if bad:
                where = "the config's weight_decay" if kind == "weight" else "0 for biases and norm weights"
                problems.append(f"{n} {kind} parameters (e.g. {g.examples[kind]}) decay at {bad[0]:g}, {where} "
                                f"gives {want:g}: weight decay is applied where the config does not say so")
    counts = "; ".join(f"group {i} (decay {g.weight_decay:g}): " + ", ".join(f"{n} {k}" for k, n in g.counts.items())
                       for i, g in enumerate(m.groups))
    if problems:
        return CheckResult("weight_decay_groups", False, f"{case.id}: " + "; ".join(problems[:3]) + f" [{counts}]")
    return CheckResult("weight_decay_groups", True, f"{case.id}: weights decay at {wd:g}, biases and norms at 0 "
                       f"[{counts}]")


def check_lora(case: Case, payload: Payload, m: Mechanics) -> CheckResult:
    """On the probe input each LoRA Linear layer adds x A^T B^T x lora_alpha / r (the case's LoRA spec)."""
    lora = m.lora
    bound = case.checks.mechanics_lora_rtol_low if lora and _low(lora.dtypes) else case.checks.mechanics_lora_rtol
    s = lora_scale(case.lora.alpha, case.lora.r)
    skipped = "; ".join(f"{n} not judged: {why}" for why, n in (lora.skipped if lora else {}).items())
    if lora is None or not lora.layers:
        return CheckResult("lora_scaling", lora is not None and bool(lora.skipped),
                           f"{case.id}: no LoRA Linear layer was probed" + (f" ({skipped})" if skipped else ""))
    worst = max(abs(lora.min_ratio - s), abs(lora.max_ratio - s)) / s
    off = max(worst, lora.max_residual)
    detail = (f"{lora.layers} layers ({'/'.join(lora.dtypes)}), scaling {lora.min_ratio:.4g} to {lora.max_ratio:.4g}, "
              f"residual {lora.max_residual:.3g}" + (f"; {skipped}" if skipped else ""))
    if off > bound:
        ratio = lora.max_ratio if abs(lora.max_ratio - s) >= abs(lora.min_ratio - s) else lora.min_ratio
        return CheckResult("lora_scaling", False, f"{case.id}: the adapter adds {ratio / s:.3g}x B·A·(lora_alpha/r "
                           f"= {case.lora.alpha}/{case.lora.r} = {s:g}) on the probe input: LoRA's scaling is "
                           f"{ratio:.4g}, not lora_alpha / r (rsLoRA's alpha/sqrt(r) would be "
                           f"{lora_scale(case.lora.alpha, case.lora.r, True):.4g}) ({detail}; bound {bound:g})",
                           value=off, bound=bound)
    return CheckResult("lora_scaling", True, f"{case.id}: the adapter adds B·A·{s:g} (lora_alpha/r) within "
                       f"{off:.3g} ({detail}; bound {bound:g})", value=off, bound=bound)


CHECKS: dict[str, Callable[[Case, Payload, Mechanics], CheckResult]] = {
    "lr_schedule": check_lr, "grad_clipping": check_clipping, "optimizer_update": check_update,
    "weight_decay_groups": check_decay, "lora_scaling": check_lora,
}


def planned(case: Case, payload: Payload) -> list[tuple[str, Callable[[], CheckResult]]]:
    """The mechanics' checks of a case (lora_scaling on adapters), or none for a payload from before the
    recorder; a recorder that raised fails them all with its exception."""
    m = payload.mechanics
    names = [n for n in NAMES if n != "lora_scaling" or case.is_adapter]
    if m is None:
        return []
    if m.raised:  # a recorder hook raised in the child: what it recorded stops there
        return [(n, lambda n=n: raised_result(n, case.id, "the mechanics recorder", m.raised)) for n in names]
    if m.not_judged:
        return [(n, lambda n=n: not_judged(n, case.id, m.not_judged)) for n in names]
    out = [(n, lambda n=n: CHECKS[n](case, payload, m)) for n in names]
    if "mechanics" in payload.raised:  # the LoRA probe after training raised: its check fails with it
        out[-1] = ("lora_scaling", lambda: raised_result("lora_scaling", case.id, "the LoRA scaling probe",
                                                         payload.raised["mechanics"]))
    return out
