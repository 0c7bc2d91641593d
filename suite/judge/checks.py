"""The assertions every case makes, as small objects: `fails(...) -> str | None`, and `run_all`, which
judges a case with them and with the checks its trainer declares (Backend.checks: each trainer's package,
suite/train/backends/<trainer>/checks.py; the shapes both share are suite/checkresult.py's).

Each failure message names the case, the measured value and the bound, so a red line in CI
says what went wrong without opening the record.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Callable

from suite.checkresult import CheckResult, attempt, guarded, not_judged, raised_result  # noqa: F401 - the judge's, re-exported
from suite.errors import exception_line
from suite.judge.bands import ClassBounds
from suite.judge.checkpoint import Inventory
from suite.judge import mechanics, modeling
from suite.judge.experts import CheckOutcome, ExpertAdapters, QuantizedWhere
from suite.matrix.spec import Case
from suite.train import tokens
from suite.train.backends.registry import backend_for
from suite.train.payload import Payload

ADAPTER_MARKERS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
INTEGER_DTYPES = {"U8", "I8", "U16", "I16", "U32", "I32", "I64", "U64"}
ADAPTER_WEIGHT_FILES = {"adapter_model.safetensors"}


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


@dataclass(frozen=True)
class LossDecreases:
    """Mean of the last k logged losses below (1 - margin) x the mean of the first k."""

    window: int
    margin: float
    name: str = "loss_decreases"

    def evaluate(self, case_id: str, losses: list[float]) -> CheckResult:
        k = self.window
        if len(losses) < 2 * k:
            return CheckResult(self.name, False, f"{case_id}: loss check needs at least {2 * k} logged losses, "
                                                 f"got {len(losses)}")
        if any(not math.isfinite(x) for x in losses):
            bad = next(i for i, x in enumerate(losses) if not math.isfinite(x))
            return CheckResult(self.name, False, f"{case_id}: loss is not finite at logged step {bad + 1} "
                                                 f"({losses[bad]})", value=float("nan"))
        first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
        bound = (1 - self.margin) * first
        passed = last < bound
        verdict = "decreased" if passed else "did not decrease enough"
        return CheckResult(self.name, passed,
                           f"{case_id}: loss {verdict}: mean of the last {k} logged losses {last:.4f} "
                           f"{'<' if passed else '>='} {bound:.4f} (= (1 - {self.margin:g}) x mean of the "
                           f"first {k}, {first:.4f})", value=last, bound=bound)


@dataclass(frozen=True)
class AdapterOnly:
    """The checkpoint of an adapter case holds the adapter and nothing of the base model."""

    name: str = "adapter_only"

    def evaluate(self, case_id: str, inv: Inventory, trainable_tensors: int,
                 expected: tuple[str, ...] = ()) -> CheckResult:
        """expected: name fragments of non-LoRA tensors the adapter must carry (added tokens' rows)."""
        problems = []
        extra_files = [f for f in inv.weight_files if f not in ADAPTER_WEIGHT_FILES]
        if extra_files:
            problems.append(f"weight files besides the adapter: {', '.join(extra_files)}")
        if "adapter_model.safetensors" not in inv.weight_files:
            problems.append("no adapter_model.safetensors (not saved in safetensors format)")
        foreign = [t.name for t in inv.tensors if not any(m in t.name for m in ADAPTER_MARKERS + expected)]
        if foreign:
            problems.append(f"{len(foreign)} non-adapter tensors, e.g. {', '.join(foreign[:3])}")
        lacking = [e for e in expected if not any(e in t.name for t in inv.tensors)]
        if lacking:
            problems.append(f"no {', '.join(lacking)} tensor (the rows of the added tokens)")
        packed = [t.name for t in inv.tensors if t.dtype in INTEGER_DTYPES]
        if packed:
            problems.append(f"{len(packed)} integer (quantized) tensors, e.g. {packed[0]}: a dump of the 4-bit base")
        if len(inv.tensors) != trainable_tensors:
            problems.append(f"{len(inv.tensors)} saved tensors but {trainable_tensors} trainable tensors")
        if problems:
            return CheckResult(self.name, False, f"{case_id}: checkpoint is not adapter-only: " + "; ".join(problems),
                               value=len(inv.tensors), bound=trainable_tensors)
        kinds = "all LoRA" if not expected else f"LoRA and {', '.join(expected)}"
        return CheckResult(self.name, True, f"{case_id}: checkpoint holds only the adapter "
                                            f"({len(inv.tensors)} tensors, {kinds})",
                           value=len(inv.tensors), bound=trainable_tensors)


@dataclass(frozen=True)
class SizeMatches:
    """Saved tensor bytes within rtol of what the parameter count and dtype imply."""

    rtol: float
    what: str  # "adapter" or "full model"
    name: str = "checkpoint_size"

    def evaluate(self, case_id: str, inv: Inventory, expected: int, detail: str) -> CheckResult:
        got = inv.tensor_bytes
        rel = abs(got - expected) / expected if expected else float("inf")
        passed = rel <= self.rtol
        return CheckResult(self.name, passed,
                           f"{case_id}: {self.what} checkpoint tensors are {_fmt_bytes(got)} ({got} B), expected "
                           f"{_fmt_bytes(expected)} ({expected} B = {detail}); off by {rel:.2%}, "
                           f"tolerance {self.rtol:.2%}; files total {_fmt_bytes(inv.total_bytes)}",
                           value=got, bound=expected)


@dataclass(frozen=True)
class HoldsWholeModel:
    """A full fine-tune's checkpoint holds every weight of the model."""

    name: str = "full_checkpoint"

    def evaluate(self, case_id: str, inv: Inventory, expected_keys: list[str]) -> CheckResult:
        saved = {t.name for t in inv.tensors}
        missing = [k for k in expected_keys if k not in saved]
        if not inv.weight_files or not all(f.endswith(".safetensors") for f in inv.weight_files):
            return CheckResult(self.name, False, f"{case_id}: full checkpoint is not safetensors-only: "
                                                 f"{inv.weight_files or 'no weight files'}")
        if missing:
            return CheckResult(self.name, False, f"{case_id}: full checkpoint lacks {len(missing)} of "
                                                 f"{len(expected_keys)} weights, e.g. {', '.join(missing[:3])}",
                               value=len(expected_keys) - len(missing), bound=len(expected_keys))
        return CheckResult(self.name, True, f"{case_id}: full checkpoint holds all {len(expected_keys)} weights",
                           value=len(expected_keys), bound=len(expected_keys))


@dataclass(frozen=True)
class ReloadMatches:
    """The checkpoint read back gives the trained model's logits on a fixed input."""

    atol: float
    name: str = "reload_logits"
    source: str = "the case's declared checks.logits_atol"

    def evaluate(self, case_id: str, diff: float, loader: str) -> CheckResult:
        passed = math.isfinite(diff) and diff <= self.atol
        return CheckResult(self.name, passed,
                           f"{case_id}: checkpoint reloaded with {loader} gives logits within {diff:.3g} of the "
                           f"trained model (max abs diff; bound {self.atol:g}: {self.source})", value=diff,
                           bound=self.atol)


@dataclass(frozen=True)
class RouteMatches:
    """One load route (suite/train/routes.py) gives back what was trained: its logits within the reload
    bound (plus the merge relation's tolerance for a merge), the trained model's greedy ids where its
    logits are the same, the saved adapter's tensors, no trainable parameter where the loader promises
    an inference model, and a generation config that agrees with the tokenizer."""

    reload: ReloadMatches
    relations: dict  # name -> the invariant relation's tolerance (suite/invariants/relations.py)

    def evaluate(self, case_id: str, outcome: dict) -> CheckResult:
        name, loader = f"reload/{outcome['route']}", outcome.get("loader", outcome["route"])
        if outcome["status"] == "error":  # the route raised (suite/train/routes.py check_route): what it said
            return CheckResult(name, False, f"{case_id}: {loader} failed: {outcome.get('reason')}",
                               raised=exception_line(str(outcome.get("reason") or "an exception without a message")))
        extra = outcome.get("bound_relation")
        bound = self.reload.atol + (self.relations.get(extra, 0.0) if extra else 0.0)
        diff = outcome.get("max_abs_logit_diff")
        diff = float("inf") if diff is None else float(diff)
        problems = []
        if not (math.isfinite(diff) and diff <= bound):
            problems.append(f"logits {diff:.3g} from {outcome.get('against', 'the trained model')}'s (bound {bound:g}: "
                            f"{self.reload.source}"
                            f"{f' + {extra}' if extra else ''})")
        if outcome.get("generation_matches") is False and diff == 0:
            problems.append(f"the same logits but other greedy ids {outcome.get('generated')}")
        if outcome.get("adapter_mismatch"):
            problems.append(f"saved adapter tensors not loaded as saved: {', '.join(outcome['adapter_mismatch'][:3])}")
        if outcome.get("inference") and outcome.get("trainable_params"):
            problems.append(f"{outcome['trainable_params']} trainable parameters from a loader that promises an "
                            f"inference model")
        if str(outcome.get("generation_config", "")).startswith("differs"):
            problems.append(f"the saved generation config {outcome['generation_config']}")
        if problems:
            return CheckResult(name, False, f"{case_id}: {loader}: " + "; ".join(problems), value=diff, bound=bound)
        note = ("" if outcome.get("generation_matches") is not False else
                f"; greedy ids differ ({outcome.get('generated')}), which logits {diff:.3g} apart allow")
        against = outcome.get("against", "the trained model")
        return CheckResult(name, True, f"{case_id}: {loader} gives logits within {diff:.3g} of {against} "
                                       f"(bound {bound:g}){note}", value=diff, bound=bound)


@dataclass(frozen=True)
class AttentionRan:
    """The attention implementation the case asked for is the one whose operators ran (the
    profiled step's operator names, suite.train.measure.attention_ops): a silent fallback from
    flash-attn 2 or SDPA to another kernel changes every speed and memory figure."""

    name: str = "attention_ran"

    def evaluate(self, case_id: str, implementation: str, ops: dict[str, int]) -> CheckResult:
        sdpa = any("_scaled_dot_product_" in k for k in ops)
        fa2 = any(re.search(r"flash_?attn", k, re.IGNORECASE) for k in ops)
        expected = {"sdpa": sdpa, "flash_attention_2": fa2, "eager": not ops}.get(implementation)
        if expected is None:
            return not_judged(self.name, case_id, f"{implementation} attention: no operator the profiled step "
                                                  f"shows tells it apart")
        seen = ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())) or "no attention operator (eager)"
        verdict = "ran" if expected else "was asked for, but the profiled step ran"
        return CheckResult(self.name, expected, f"{case_id}: {implementation} attention {verdict}: {seen}",
                           value=float(len(ops)))


@dataclass(frozen=True)
class EvalLossFalls:
    """The loss on the eval split after training is below the loss before it (checks.eval_falls)."""

    name: str = "eval_loss_falls"

    def evaluate(self, case_id: str, evals: list[dict]) -> CheckResult:
        if len(evals) < 2:
            return CheckResult(self.name, False, f"{case_id}: the eval split was evaluated {len(evals)} time(s); "
                                                 f"the check needs the first and the last step")
        first, last = evals[0]["eval_loss"], evals[-1]["eval_loss"]
        passed = last < first
        return CheckResult(self.name, passed, f"{case_id}: eval loss {'fell' if passed else 'did not fall'}: "
                                              f"{first:.4f} at step {evals[0]['step']} -> {last:.4f} at step "
                                              f"{evals[-1]['step']}", value=last, bound=first)


@dataclass(frozen=True)
class LoraDropoutActs:
    """An adapter trained with LoRA dropout (feature lora_dropout): its dropout layers have the rate the
    case asked for; in evaluation it is off (two more eval-mode forwards agree with the probe within
    `atol`, the case's reload bound: what the reload and every load route are then compared with),
    while two training-mode forwards differ by more than that."""

    atol: float
    name: str = "lora_dropout"

    def evaluate(self, case_id: str, rate: float, measured: dict | None) -> CheckResult:
        if measured is None:
            return CheckResult(self.name, False, f"{case_id}: the trained model has no LoRA dropout layer; the case "
                                                 f"asked for lora.dropout {rate}")
        problems = []
        if measured["rates"] != [rate]:
            problems.append(f"its {measured['modules']} dropout layers have rates {measured['rates']}, not {rate}")
        if measured["eval_repeat_diff"] > self.atol:
            problems.append(f"eval-mode forwards differ by {measured['eval_repeat_diff']:.3g} (> {self.atol:g}): "
                            f"dropout is on in evaluation")
        if measured["train_pair_diff"] <= self.atol:
            problems.append(f"two training-mode forwards differ by only {measured['train_pair_diff']:.3g} "
                            f"(<= {self.atol:g}): no dropout in training")
        what = (f"eval-mode forwards agree within {measured['eval_repeat_diff']:.3g}, training-mode ones differ by "
                f"{measured['train_pair_diff']:.3g}, {measured['modules']} layers at rate {rate}")
        return CheckResult(self.name, not problems, f"{case_id}: LoRA dropout " + ("; ".join(problems) if problems
                                                                                   else what),
                           value=measured["train_pair_diff"], bound=self.atol)


def run_all(case: Case, payload: Payload, inv: Inventory | None,
            bounds: ClassBounds | None = None) -> list[CheckResult]:
    """Every check that applies to the case: the common ones, then its trainer's own (its backend
    names them); `bounds`: the run's kernel class's measured bounds, which replace a declared one
    where the class measured more (suite/judge/bands.py). A check that raises, or whose measurement
    raised in the child (payload.raised), fails alone with the exception; the others are judged."""
    return [r for name, evaluate in planned(case, payload, inv, bounds) for r in guarded(name, case.id, evaluate)]


Planned = list[tuple[str, Callable[[], "CheckResult | list[CheckResult]"]]]


def planned(case: Case, payload: Payload, inv: Inventory | None, bounds: ClassBounds | None) -> Planned:
    """(name, how to evaluate it) of every check that applies to the case, in the record's order."""
    c = case.checks
    backend = backend_for(case)
    out: Planned = []
    if backend.loss_falls:  # a generating trainer's surrogate loss: its reward rises instead
        out.append(("loss_decreases", lambda: LossDecreases(c.loss_window, c.loss_margin).evaluate(case.id,
                                                                                                   payload.losses)))
    out.append(("checkpoint", lambda: checkpoint_checks(case, payload, inv)))
    if payload.params.quantized is not None:
        check = QuantizedWhere(c.unquantized)
        out.append((check.name, lambda: _outcome(check, case.id, payload.params.quantized)))
    if payload.reload:
        out.append(("reload_logits", lambda: _reload(case, payload, bounds)))
        out.append(("reload/routes", lambda: route_checks(case, payload, bounds)))
    if c.eval_falls:
        out.append(("eval_loss_falls", lambda: EvalLossFalls().evaluate(case.id, payload.eval_curve)))
    if case.uses.adapter_dropout:
        out.append(("lora_dropout", lambda: LoraDropoutActs(case.checks.logits_atol).evaluate(
            case.id, case.lora.dropout, payload.dropout)))
    # the training mechanics, every trainer's (suite/judge/mechanics.py)
    out += mechanics.planned(case, payload)
    # the trained model's padding invariance and router relations, every causal LM's (suite/judge/modeling.py)
    out += modeling.planned(case, payload)
    # the trainer's own, declared by its package (suite/train/backends/<trainer>/checks.py), in its order
    out += [(check.name, functools.partial(check.evaluate, case, payload, bounds, inv))
            for check in backend.checks_for(case)]
    ops = payload.device.attention_ops
    if "profile" in payload.raised and not backend.picks_attention:
        out.append(("attention_ran", lambda: raised_result("attention_ran", case.id, "the profiled step",
                                                           payload.raised["profile"])))
    elif ops is not None and not backend.picks_attention:  # its own kernels: recorded, not checked
        out.append(("attention_ran", lambda: AttentionRan().evaluate(case.id, case.attention, ops)))
    return out


def _reload(case: Case, payload: Payload, bounds: ClassBounds | None) -> CheckResult:
    """The backend's own reload against the trained model, or what it raised."""
    reload = payload.reload
    if "reload" in payload.raised:
        return raised_result("reload_logits", case.id, f"the reload ({reload.loader})", payload.raised["reload"])
    return reload_check(case, bounds).evaluate(case.id, float(reload.max_abs_logit_diff), reload.loader)


def route_checks(case: Case, payload: Payload, bounds: ClassBounds | None) -> list[CheckResult]:
    """A check per load route that applies (`reload/<route>`), and the saved tokenizer's; the routes
    that do not apply are in the record with why (reload.routes). A route that raised fails alone."""
    from suite.invariants.relations import RELATIONS

    reload = payload.reload
    if reload is None or reload.routes is None:
        return []
    check = RouteMatches(reload_check(case, bounds), {name: r.tolerance for name, r in RELATIONS.items()})
    out = [result for r in reload.routes if r.get("status") != "not_applicable"
           for result in guarded(f"reload/{r.get('route', '?')}", case.id, functools.partial(check.evaluate, case.id, r))]
    tok = reload.tokenizer or {}
    if "tokenizer" in payload.raised:
        out.append(raised_result("saved_tokenizer", case.id, "the saved tokenizer's check", payload.raised["tokenizer"]))
    elif tok.get("saved"):
        problems = tok.get("problems") or []
        out.append(CheckResult("saved_tokenizer", not problems,
                               f"{case.id}: the tokenizer saved beside the checkpoint "
                               + ("; ".join(problems) if problems else "tokenizes the probe texts and renders the chat "
                                  "template as training's did")))
    return out


def checkpoint_checks(case: Case, payload: Payload, inv: Inventory | None) -> list[CheckResult]:
    """What the saved checkpoint holds: only the adapter with the size its trainable parameters imply,
    or the whole model with the size of its state dict."""
    c, params = case.checks, payload.params
    if "save" in payload.raised:  # saving raised in the child: whatever it left is not a checkpoint to judge
        return [raised_result("checkpoint", case.id, "saving the checkpoint", payload.raised["save"])]
    if inv is None:
        return [CheckResult("checkpoint", False, f"{case.id}: no checkpoint directory was found")]
    if case.is_adapter:
        detail = f"{params.trainable} trainable params in {'/'.join(params.trainable_dtypes)}"
        expected = tokens.expected_tensors(case) + backend_for(case).adapter_carries  # added rows, a score head
        out = [AdapterOnly().evaluate(case.id, inv, params.trainable_tensors, expected),
               SizeMatches(c.size_rtol, "adapter").evaluate(case.id, inv, params.trainable_bytes, detail)]
        if case.lora.target_parameters:  # the fused experts' LoRA pairs
            layers = payload.flops.n_layers if payload.flops else 0
            check = ExpertAdapters(case.lora.target_parameters, layers, case.lora.r)
            out.append(_outcome(check, case.id, inv, params))
        return out
    keys = params.state_dict_keys or []
    return [HoldsWholeModel().evaluate(case.id, inv, keys),
            SizeMatches(c.size_rtol, "full model").evaluate(case.id, inv, params.state_dict_bytes or 0,
                                                            f"{len(keys)} state-dict tensors")]


def _outcome(check, case_id: str, *args) -> CheckResult:
    """A check of suite/judge/experts.py, evaluated, as a CheckResult."""
    o: CheckOutcome = check.evaluate(case_id, *args)
    return CheckResult(check.name, o.passed, o.message, o.value, o.bound)


def reload_check(case: Case, bounds: ClassBounds | None) -> ReloadMatches:
    """The reload bound on a kernel class: its measured bound where it has one, else the case's declared one."""
    measured = bounds.bound("reload_logits", case.method) if bounds else None
    return ReloadMatches(measured[0], source=measured[1]) if measured else ReloadMatches(case.checks.logits_atol)
