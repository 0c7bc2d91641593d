"""The assertions every case makes, as small objects: `fails(...) -> str | None`.

Each failure message names the case, the measured value and the bound, so a red line in CI
says what went wrong without opening the record.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable

from suite.errors import exception_line
from suite.judge.bands import ClassBounds
from suite.judge.checkpoint import Inventory
from suite.judge.experts import CheckOutcome, ExpertAdapters, QuantizedWhere
from suite.matrix.spec import Case
from suite.train import tokens
from suite.train.backends.registry import backend_for
from suite.train.payload import Payload

ADAPTER_MARKERS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
INTEGER_DTYPES = {"U8", "I8", "U16", "I16", "U32", "I32", "I64", "U64"}
ADAPTER_WEIGHT_FILES = {"adapter_model.safetensors"}


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str
    value: float | None = None
    bound: float | None = None
    # what the check (or the route, the phase of the child it judges) raised: "ValueError: <first line>";
    # the reports group cases that failed with the same one (suite/report/findings.py)
    raised: str | None = None

    def to_dict(self) -> dict:
        doc = asdict(self)
        if doc["raised"] is None:  # the record keeps its old shape for a check that did not raise
            del doc["raised"]
        return doc


def raised_result(name: str, case_id: str, what: str, raised: str) -> CheckResult:
    """The failure of a check whose measurement or evaluation raised: named, with the exception."""
    return CheckResult(name, False, f"{case_id}: {what} raised {raised}", raised=exception_line(raised))


def attempt(name: str, case_id: str, what: str, compute: Callable[[], Any], fallback: Any) -> tuple[Any, list[CheckResult]]:
    """(compute(), []) or, where it raises, (fallback, [the failed check `name` carrying the exception])."""
    try:
        return compute(), []
    except Exception as exc:  # noqa: BLE001 - any exception here is that part's finding
        return fallback, [raised_result(name, case_id, what, exception_line(exc))]


def guarded(name: str, case_id: str, evaluate: Callable[[], CheckResult | list[CheckResult]]) -> list[CheckResult]:
    """Evaluate one check (or a group of them, named `name`): what it raises is that check's failure,
    and the case's other checks are still judged."""
    try:
        out = evaluate()
    except Exception as exc:  # noqa: BLE001 - any exception of one check is that check's finding
        return [raised_result(name, case_id, f"the check {name}", exception_line(exc))]
    return out if isinstance(out, list) else [out]


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
            return CheckResult(self.name, True, f"{case_id}: {implementation} attention is not checked")
        seen = ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())) or "no attention operator (eager)"
        verdict = "ran" if expected else "was asked for, but the profiled step ran"
        return CheckResult(self.name, expected, f"{case_id}: {implementation} attention {verdict}: {seen}",
                           value=float(len(ops)))


@dataclass(frozen=True)
class StartsAtLn2:
    """DPO's first logged loss is ln 2: policy and reference are the same model before the first
    update (a fresh adapter is zero; a full fine-tune's reference is a copy), so every pair's margin is 0."""

    atol: float
    name: str = "dpo_starts_at_ln2"

    def evaluate(self, case_id: str, losses: list[float]) -> CheckResult:
        if not losses:
            return CheckResult(self.name, False, f"{case_id}: no logged loss to compare with ln 2")
        first, diff = losses[0], abs(losses[0] - math.log(2))
        passed = diff <= self.atol
        why = "" if passed else ": the policy was not its reference at the start (a trained or shared reference?)"
        return CheckResult(self.name, passed, f"{case_id}: first DPO loss {first:.6g} is {diff:.2g} from ln 2 "
                                              f"({'<=' if passed else '>'} {self.atol:g}){why}",
                           value=diff, bound=self.atol)


def first_and_last_windows(curve: list[dict], keys: tuple[str, ...], k: int) -> dict[str, tuple[float, float]] | str:
    """Per logged key, the mean of its first k and its last k values over the curve; or why not (a key
    logged fewer than 2k times)."""
    out = {}
    for key in keys:
        series = [p[key] for p in curve if key in p]
        if len(series) < 2 * k:
            return f"{key} logged {len(series)} times, the check needs {2 * k}"
        out[key] = (sum(series[:k]) / k, sum(series[-k:]) / k)
    return out


@dataclass(frozen=True)
class RewardsRise:
    """DPO's reward margins and accuracies, mean of the last k logged steps above the first k."""

    window: int
    name: str = "dpo_rewards_rise"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        k = self.window
        windows = first_and_last_windows(curve, ("rewards/margins", "rewards/accuracies"), k)
        if isinstance(windows, str):
            return CheckResult(self.name, False, f"{case_id}: {windows}")
        ok = all(last > first for first, last in windows.values())
        parts = [f"{key.split('/')[1]} {first:.4g} -> {last:.4g}" for key, (first, last) in windows.items()]
        verdict = "rose" if ok else "did not rise"
        return CheckResult(self.name, ok, f"{case_id}: DPO rewards {verdict} (mean of the first {k} logged "
                                          f"steps -> the last {k}): {', '.join(parts)}")


@dataclass(frozen=True)
class ReferenceUntouched:
    """The reference DPO compared against is still the base: its logits on the probe input after
    training against the same model object's before training, on the same kernels (bitwise)."""

    atol: float
    name: str = "reference_untouched"
    source: str = "bitwise: the same kernels before and after"

    def evaluate(self, case_id: str, kind: str, diff: float) -> CheckResult:
        passed = diff <= self.atol
        verdict = "is the base, untouched" if passed else "moved during training"
        return CheckResult(self.name, passed, f"{case_id}: the reference ({kind}) {verdict}: max |logit "
                                              f"difference| after training vs before {diff:.3g} "
                                              f"({'<=' if passed else '>'} {self.atol:g}: {self.source})", value=diff,
                           bound=self.atol)


@dataclass(frozen=True)
class KTOStartsAtReference:
    """KTO's first step: policy and reference are the same model (a fresh adapter is zero; a full
    fine-tune's reference is a copy), so trl's KL estimate is 0 and every loss term is 1 - sigmoid(0):
    the first logged loss is 0.5 (desirable and undesirable weights 1) and the first logged kl 0."""

    atol: float
    name: str = "kto_starts_at_reference"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        if not curve or "kl" not in curve[0]:
            return CheckResult(self.name, False, f"{case_id}: no first step with trl's KL estimate (kl) logged")
        loss, kl = curve[0]["loss"], curve[0]["kl"]
        diff = max(abs(loss - 0.5), abs(kl))
        passed = diff <= self.atol
        why = "" if passed else ": the policy was not its reference at the start (a trained or shared reference?)"
        return CheckResult(self.name, passed, f"{case_id}: first KTO step: loss {loss:.6g} (0.5 expected), kl "
                                              f"{kl:.3g} (0 expected), largest difference {diff:.2g} "
                                              f"({'<=' if passed else '>'} {self.atol:g}){why}",
                           value=diff, bound=self.atol)


@dataclass(frozen=True)
class KTORewardsSeparate:
    """KTO's implicit rewards as trl's docs describe training: the desirable completions' reward
    (rewards/chosen) ends above the undesirable ones' (rewards/rejected), and their margin, mean of the
    last k logged steps, is above the first k's."""

    window: int
    name: str = "kto_rewards_separate"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        k, series = self.window, {}
        for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
            series[key] = [p[key] for p in curve if key in p]
            if len(series[key]) < 2 * k:
                return CheckResult(self.name, False, f"{case_id}: {key} logged {len(series[key])} times, the check "
                                                     f"needs {2 * k}")
        last = {key: sum(v[-k:]) / k for key, v in series.items()}
        first_margin = sum(series["rewards/margins"][:k]) / k
        above, rose = last["rewards/chosen"] > last["rewards/rejected"], last["rewards/margins"] > first_margin
        ok = above and rose
        return CheckResult(self.name, ok, f"{case_id}: KTO rewards {'separate' if ok else 'do not separate'}: "
                                          f"desirable {last['rewards/chosen']:.4g} "
                                          f"{'>' if above else '<='} undesirable {last['rewards/rejected']:.4g} "
                                          f"(mean of the last {k} logged steps); margin {first_margin:.4g} -> "
                                          f"{last['rewards/margins']:.4g} ({'rose' if rose else 'did not rise'})",
                           value=last["rewards/margins"], bound=first_margin)


@dataclass(frozen=True)
class PairwiseRise:
    """A reward model's pairwise accuracy (share of pairs whose chosen completion scores higher) and
    mean margin (chosen minus rejected score), as trl's RewardTrainer logs them: the mean of the last k
    logged steps above the first k's."""

    window: int
    name: str = "reward_pairs_rise"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        k = self.window
        windows = first_and_last_windows(curve, ("accuracy", "margin"), k)
        if isinstance(windows, str):
            return CheckResult(self.name, False, f"{case_id}: {windows}")
        ok = all(last > first for first, last in windows.values())
        parts = [f"{key} {first:.4g} -> {last:.4g}" for key, (first, last) in windows.items()]
        return CheckResult(self.name, ok, f"{case_id}: reward model pairwise {'rose' if ok else 'did not rise'} "
                                          f"(mean of the first {k} logged steps -> the last {k}): {', '.join(parts)}")


@dataclass(frozen=True)
class ScoreHeadSaved:
    """The checkpoint holds the classifier's score head (for an adapter: peft's modules_to_save copy
    saved with the LoRA tensors), so a reload scores with the trained head, not a fresh random one."""

    name: str = "score_head_saved"

    def evaluate(self, case_id: str, inv: Inventory | None, fragment: str = "score") -> CheckResult:
        if inv is None:
            return CheckResult(self.name, False, f"{case_id}: no checkpoint directory was found")
        held = [t.name for t in inv.tensors if fragment in t.name]
        return CheckResult(self.name, bool(held), f"{case_id}: the checkpoint "
                                                  + (f"holds the score head ({', '.join(held)})" if held else
                                                     f"holds no {fragment} tensor: a reload scores with a new "
                                                     f"random head"), value=float(len(held)))


def _score_head(case: Case, payload: Payload, bounds: ClassBounds | None) -> CheckResult:
    from pathlib import Path

    from suite.judge.checkpoint import inventory

    directory = payload.checkpoint.dir if payload.checkpoint else None
    inv = inventory(directory) if directory and Path(directory).is_dir() else None
    return ScoreHeadSaved().evaluate(case.id, inv)


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
    out += [(name, functools.partial(TRAINER_CHECKS[name], case, payload, bounds)) for name in backend.checks_for(case)]
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


def reference_check(case: Case, payload: Payload, bounds: ClassBounds | None) -> CheckResult:
    """Bitwise where the reference ran the same kernels before and after training; where bitsandbytes
    repacked the 4-bit base for its bf16 inference GEMM in between (an eval-mode forward during
    training, on an AVX512-BF16 CPU), within the class's measured bound, and the message says so."""
    ref = payload.reference
    if ref is None:
        return CheckResult("reference_untouched", False, f"{case.id}: the child measured no reference model")
    if not ref.repacked:
        return ReferenceUntouched(case.checks.reference_atol).evaluate(case.id, ref.kind, ref.max_abs_logit_diff)
    why = ("bitsandbytes repacked the 4-bit base for its bf16 inference GEMM during training (an eval-mode "
           "forward), so before and after ran different kernels")
    measured = bounds.bound("reference_untouched", case.method) if bounds else None
    if measured is None:
        return CheckResult("reference_untouched", False, f"{case.id}: {why}, and kernel class "
                                                         f"{bounds.name if bounds else '?'} has no measured bound for "
                                                         f"{case.method} (docs/kernel-classes.md)",
                           value=ref.max_abs_logit_diff)
    return ReferenceUntouched(measured[0], source=f"{why}; {measured[1]}").evaluate(case.id, ref.kind,
                                                                                    ref.max_abs_logit_diff)


@dataclass(frozen=True)
class OnlineRewardRises:
    """A generating trainer's objective: the mean reward of its sampled completions (trl's `reward`), mean
    of the last k logged steps, above the first k's by at least margin x |first|."""

    window: int
    margin: float
    name: str = "online_reward_rises"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        windows = first_and_last_windows(curve, ("reward",), self.window)
        if isinstance(windows, str):
            return CheckResult(self.name, False, f"{case_id}: {windows}")
        first, last = windows["reward"]
        bound = first + self.margin * abs(first)
        ok = last > bound
        return CheckResult(self.name, ok, f"{case_id}: mean reward of the sampled completions {first:.4g} -> "
                                          f"{last:.4g} (first {self.window} logged steps -> last {self.window}), "
                                          f"{'above' if ok else 'not above'} {bound:.4g} (a rise of "
                                          f"{self.margin:g} x the start)", value=last, bound=bound)


# Per loss type, the first step's loss from the completions' token counts L and advantages A (n completions,
# m the longest completion allowed), trl 1.16's definitions (grpo_trainer.py's _compute_loss; RLOO's own loss)
# with every ratio 1 and no KL: each completion contributes -A_i per token. "dapo" and "bnpo": the batch's
# token-level sum over its completion tokens; "grpo": each completion's token mean, then the mean over
# completions; "dr_grpo": the sum over n x m; "luspo": each completion's token sum, then the mean; "rloo"
# (RLOOTrainer's loss, not a GRPO type): sequence-level, the mean of -A_i.
LOSS_AT_RATIO_ONE: dict[str, Callable[[list[int], list[float], int], float]] = {
    "dapo": lambda L, A, m: sum(-a * n for a, n in zip(A, L)) / max(sum(L), 1),
    "bnpo": lambda L, A, m: sum(-a * n for a, n in zip(A, L)) / max(sum(L), 1),
    "grpo": lambda L, A, m: sum(-a if n else 0.0 for a, n in zip(A, L)) / len(L),
    "dr_grpo": lambda L, A, m: sum(-a * n for a, n in zip(A, L)) / (len(L) * m),
    "luspo": lambda L, A, m: sum(-a * n for a, n in zip(A, L)) / len(L),
    "rloo": lambda L, A, m: sum(-a for a in A) / len(L),
}


def first_loss_by_definition(loss_type: str, lengths: list[int], advantages: list[float],
                             max_completion_length: int) -> float | None:
    """The loss of a policy equal to its old self over one generation batch in one micro-batch (LOSS_AT_RATIO_ONE);
    None for a loss type whose value also needs the log-probabilities (cispo, vespo) or a temperature (sapo)."""
    definition = LOSS_AT_RATIO_ONE.get(loss_type)
    return definition(lengths, advantages, max_completion_length) if definition else None


@dataclass(frozen=True)
class FirstLossByDefinition:
    """The first logged loss is what the loss type's definition gives for the first step's sampled
    completions (their token counts and advantages, as the recorder saw them): the policy is its old self
    (ratio 1) and its own reference (no KL). trl's default GRPO loss (dapo) is not 0: longer completions
    weigh more."""

    atol: float
    loss_type: str
    max_completion_length: int
    name: str = "first_loss_by_definition"

    def evaluate(self, case_id: str, curve: list[dict], grad_accum: int | None) -> CheckResult:
        if not curve or "sampled/advantages" not in curve[0]:
            return CheckResult(self.name, False, f"{case_id}: no first step with its sampled completions recorded")
        if grad_accum != 1:
            return CheckResult(self.name, False, f"{case_id}: the definition is derived for one micro-batch per "
                                                 f"generation batch; the trainer accumulated {grad_accum}")
        first = curve[0]
        expected = first_loss_by_definition(self.loss_type, first["sampled/lengths"], first["sampled/advantages"],
                                            self.max_completion_length)
        if expected is None:
            return CheckResult(self.name, False, f"{case_id}: no derivation for loss type {self.loss_type!r}")
        diff = abs(first["loss"] - expected)
        ok = diff <= self.atol
        why = "" if ok else ": the policy was not its old self, or the loss is not the declared type's"
        return CheckResult(self.name, ok, f"{case_id}: first loss {first['loss']:.6g}, {self.loss_type}'s definition "
                                          f"on the step's {len(first['sampled/lengths'])} completions "
                                          f"({sum(first['sampled/lengths'])} tokens) gives {expected:.6g}: "
                                          f"difference {diff:.2g} ({'<=' if ok else '>'} {self.atol:g}){why}",
                           value=diff, bound=self.atol)


@dataclass(frozen=True)
class AdvantagesZeroMean:
    """Each prompt's group of sampled completions has advantages of mean 0 (GRPO: reward less the group's
    mean, over its spread; RLOO: reward less the mean of the group's others), at every logged step: the
    largest |group mean| within atol."""

    atol: float
    group: int
    name: str = "advantages_zero_mean"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        worst, where = 0.0, None
        steps = [p for p in curve if "sampled/advantages" in p]
        if not steps:
            return CheckResult(self.name, False, f"{case_id}: no step with its advantages recorded")
        for p in steps:
            adv = p["sampled/advantages"]
            for g in range(0, len(adv), self.group):
                mean = abs(sum(adv[g:g + self.group]) / self.group)
                if mean > worst:
                    worst, where = mean, (p["step"], g // self.group)
        ok = worst <= self.atol
        at = f" (step {where[0]}, group {where[1]})" if where else ""
        return CheckResult(self.name, ok, f"{case_id}: largest |mean advantage| of a group of {self.group} "
                                          f"completions over {len(steps)} steps: {worst:.2g}{at} "
                                          f"({'<=' if ok else '>'} {self.atol:g})", value=worst, bound=self.atol)


@dataclass(frozen=True)
class KLStartsAtZero:
    """With a KL coefficient above 0, trl's first logged KL (policy vs reference on the first sampled
    completions) is 0: the policy is its reference before the first update."""

    atol: float
    name: str = "kl_starts_at_zero"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        if not curve or "kl" not in curve[0]:
            return CheckResult(self.name, False, f"{case_id}: no first step with trl's KL (kl) logged")
        kl = curve[0]["kl"]
        ok = abs(kl) <= self.atol
        why = "" if ok else ": the policy was not its reference at the start"
        return CheckResult(self.name, ok, f"{case_id}: first KL {kl:.3g} ({'<=' if ok else '>'} {self.atol:g}){why}",
                           value=abs(kl), bound=self.atol)


@dataclass(frozen=True)
class CompletionsOnPolicy:
    """Every step's completions are the current policy's samples: replayed by the policy of that step from
    the same random state, every one of them comes out token for token (sampled/on_policy 1)."""

    name: str = "completions_on_policy"

    def evaluate(self, case_id: str, curve: list[dict]) -> CheckResult:
        shares = [(p["step"], p["sampled/on_policy"]) for p in curve if "sampled/on_policy" in p]
        if not shares:
            return CheckResult(self.name, False, f"{case_id}: no step with its sampling replayed")
        off = [(step, share) for step, share in shares if share < 1.0]
        lowest = min(share for _, share in shares)
        msg = (f"{case_id}: replayed by the policy of its step from the same random state, every completion of "
               f"all {len(shares)} steps came out again token for token")
        if off:
            msg = (f"{case_id}: replayed by the policy of its step, {len(off)} of {len(shares)} steps' completions "
                   f"did not all come out again (first step {off[0][0]}: {off[0][1]:.0%}; lowest {lowest:.0%}): "
                   f"not sampled by the current policy (a stale or frozen generator?)")
        return CheckResult(self.name, not off, msg, value=lowest, bound=1.0)


def _first_loss(loss_type: str | None):
    def check(case: Case, payload: Payload, bounds: ClassBounds | None) -> CheckResult:
        backend = backend_for(case)
        kind = loss_type or backend.config_value(case, "loss_type")
        args = (payload.resolved or {}).get("args", {})
        return FirstLossByDefinition(case.checks.first_loss_atol, kind,
                                     backend.config_value(case, "max_completion_length")).evaluate(
            case.id, payload.loss_curve, args.get("gradient_accumulation_steps"))
    return check


# The checks a trainer's backend may name as its own (Backend.checks): DPO's, KTO's, the reward trainer's;
# each bound by its own tolerance of the case's checks (suite/matrix/spec.py's CheckSpec).
TRAINER_CHECKS: dict[str, Callable[[Case, Payload, ClassBounds | None], CheckResult]] = {
    "starts_at_ln2": lambda case, payload, bounds: StartsAtLn2(case.checks.dpo_ln2_atol).evaluate(case.id,
                                                                                                  payload.losses),
    "rewards_rise": lambda case, payload, bounds: RewardsRise(case.checks.loss_window).evaluate(case.id,
                                                                                                payload.loss_curve),
    "reference_untouched": reference_check,
    "kto_starts_at_reference": lambda case, payload, bounds: KTOStartsAtReference(case.checks.kto_start_atol).evaluate(
        case.id, payload.loss_curve),
    "kto_rewards_separate": lambda case, payload, bounds: KTORewardsSeparate(case.checks.loss_window).evaluate(
        case.id, payload.loss_curve),
    "reward_pairs_rise": lambda case, payload, bounds: PairwiseRise(case.checks.loss_window).evaluate(
        case.id, payload.loss_curve),
    "score_head_saved": _score_head,
    # the generating trainers (GRPO, RLOO): "policy equals its old self and its reference at step 1"
    # (first_loss_atol, kl_start_atol) and the group means of the advantages (advantages_atol)
    "online_reward_rises": lambda case, payload, bounds: OnlineRewardRises(
        case.checks.loss_window, case.checks.loss_margin).evaluate(case.id, payload.loss_curve),
    "grpo_first_loss": _first_loss(None),  # the loss type the case declares
    "rloo_first_loss": _first_loss("rloo"),
    "advantages_zero_mean": lambda case, payload, bounds: AdvantagesZeroMean(
        case.checks.advantages_atol, backend_for(case).config_value(case, "num_generations")).evaluate(
        case.id, payload.loss_curve),
    "kl_starts_at_zero": lambda case, payload, bounds: KLStartsAtZero(case.checks.kl_start_atol).evaluate(
        case.id, payload.loss_curve),
    "completions_on_policy": lambda case, payload, bounds: CompletionsOnPolicy().evaluate(case.id,
                                                                                          payload.loss_curve),
}
