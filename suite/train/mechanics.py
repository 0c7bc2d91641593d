"""The training mechanics as the child saw them, for the generic relations of suite/judge/mechanics.py:
per optimizer step the learning rate and weight decay of each parameter group as the optimizer read them
(a step pre-hook), the gradient norm before clipping (measured by this module on entering the trainer's
clip, after the last micro-batch's backward) and after it (at the optimizer's pre-hook); once, the groups'
members by the suite's own rule (bias / norm / weight), the optimizer and what the trainer's arguments
say; for two steps an AdamW update recomputed by the suite's own formula (only the discrepancy is kept);
after training, for an adapter, the LoRA scaling probe. Installed on every built trainer after its
backend's instrument (suite/train/run.py); nothing here changes what trains.

The values are computed here with plain torch arithmetic, never with the library functions they judge
(torch.nn.utils.clip_grad_norm_, the scheduler's lambdas, peft's `scaling`): see FORBIDDEN_ORACLES in
suite/judge/mechanics.py."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from suite.errors import exception_line

# the AdamW update is recomputed at step 2 (step 1 has no moments to read) and at the middle step (not the
# last: a linear schedule's last rate is peak / max_steps, an update near the rounding of an fp32 parameter)
UPDATE_STEPS = (2,)
LOW_PRECISION = ("bfloat16", "float16")  # parameters whose one-step update is below their own rounding
# at most this many elements per update check: a 7B full fine-tune must not clone its whole model
UPDATE_ELEMENTS = 4_000_000
PROBE_ROWS = 4  # rows of the LoRA probe's random input
PROBE_SEED = 1234


@dataclass
class StepSeen:
    step: int  # the optimizer step, from 1
    lrs: list[float]  # per group, as the optimizer read them at its step
    weight_decays: list[float]
    pre_norm: float | None  # the trainable gradients' norm on entering the clip (None: no clip was called)
    post_norm: float  # their norm as the optimizer saw them


@dataclass
class GroupSeen:
    weight_decay: float
    counts: dict[str, int]  # kind (bias / norm / weight, the suite's own rule) -> parameters
    examples: dict[str, str]  # kind -> one parameter's name


@dataclass
class UpdateSeen:
    step: int
    tensors: int
    elements: int
    max_rel: float  # max over tensors of what |actual - expected| exceeds 2 ulp by, / max |expected update|
    max_abs: float
    dtypes: list[str]


@dataclass
class LoraSeen:
    """Per LoRA Linear layer, the least-squares ratio of `layer(x) - base(x)` to `x A^T B^T` (the scaling
    the layer applied) and the residual of that fit; the judge holds the ratio to the case's alpha / r."""
    layers: int
    min_ratio: float | None
    max_ratio: float | None
    max_residual: float | None  # max |delta - ratio x xAB| / max |ratio x xAB|
    skipped: dict[str, int]  # why -> layers not judged (DoRA, target_parameters, embeddings)
    dtypes: list[str]


@dataclass
class Mechanics:
    optimizer: str  # class, with its module
    hyper: dict[str, Any]  # betas, eps, fused, foreach as the optimizer's first group says
    args: dict[str, Any]  # learning_rate, lr_scheduler_type, warmup_steps, max_steps, max_grad_norm, ...
    groups: list[GroupSeen] = field(default_factory=list)
    unassigned: list[str] = field(default_factory=list)  # trainable parameters in no group
    steps: list[StepSeen] = field(default_factory=list)
    updates: list[UpdateSeen] = field(default_factory=list)
    update_not_judged: str | None = None
    lora: LoraSeen | None = None
    not_judged: str | None = None  # the whole record: why nothing was measured (a distributed run)
    dtypes: list[str] = field(default_factory=list)  # the trainable parameters' (their gradients')
    raised: str | None = None  # "Type: first line" of what a hook raised: recording stopped there

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> Mechanics:
        parts = {"groups": GroupSeen, "steps": StepSeen, "updates": UpdateSeen}
        out = {f.name: doc.get(f.name) for f in fields(cls) if f.name in doc}
        for name, part in parts.items():
            out[name] = [part(**d) for d in doc.get(name) or []]
        out["lora"] = LoraSeen(**doc["lora"]) if doc.get("lora") else None
        return cls(**out)


def param_kind(name: str, module: Any) -> str:
    """The suite's own statement of transformers' documented rule: biases and normalisation weights are not
    decayed. A name ending in "bias", or a parameter of a module whose class is a norm (LayerNorm, RMSNorm)."""
    if name.rsplit(".", 1)[-1] == "bias":
        return "bias"
    return "norm" if "norm" in type(module).__name__.lower() else "weight"


def _norm(tensors: list) -> float:
    import torch

    # each tensor's norm accumulated in fp32 (no float64 copy of a 7B model's gradients), summed in float64
    total = 0.0
    for t in tensors:
        total += float(torch.linalg.vector_norm(t.detach(), dtype=torch.float32).item()) ** 2
    return total ** 0.5


def adamw_expected(p, g, m, v, step: int, lr: float, wd: float, betas: tuple[float, float], eps: float):
    """AdamW as Loshchilov & Hutter write it (decoupled weight decay, Adam's bias correction), in float64:
    the parameter after one step from its value, gradient and moments before it (step: the new count)."""
    import torch

    p, g, m, v = (t.to(torch.float64) for t in (p, g, m, v))
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** step), v / (1 - b2 ** step)
    return p - lr * wd * p - lr * m_hat / (v_hat.sqrt() + eps)


def _guarded(method: Callable) -> Callable:
    """A recorder hook that raises stops recording and leaves its exception in the record (the relations fail
    with it): the training it watches goes on, and the case is judged, not an error."""
    @functools.wraps(method)
    def hook(self, *args, **kwargs):
        if self.record.raised is not None:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any exception here is the recorder's finding
            self.record.raised, self.active = exception_line(exc), False
            return None

    return hook


class MechanicsRecorder:
    """Installed on a built trainer: hooks its optimizer when the trainer creates it, and its clip."""

    def __init__(self, trainer: Any, case: Any):
        self.record = Mechanics(optimizer="", hyper={}, args={})
        self._clip_owner, self.active = None, True
        self._install(trainer, case)

    @_guarded
    def _install(self, trainer: Any, case: Any) -> None:
        self.trainer, self.case = trainer, case
        args = trainer.args
        self.record = Mechanics(optimizer="", hyper={}, args={k: _plain(getattr(args, k, None)) for k in (
            "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio",
            "max_steps", "max_grad_norm", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "optim")})
        self.active = True
        self._pre: float | None = None
        self._snapshot: list | None = None
        self._params: dict[int, str] = {}
        self._optimizer = None
        if args.world_size > 1:  # sharded or reduced gradients: one rank's view is not the step's
            self.record.not_judged = f"a distributed run ({args.world_size} ranks): one rank's gradients"
            return
        creating = trainer.create_optimizer

        def create_optimizer(*a, **k):
            optimizer = creating(*a, **k)
            self._hook(optimizer)
            return optimizer

        trainer.create_optimizer = create_optimizer
        self._clip_owner, self._clip_name = ((trainer, "_clip_grad_norm") if hasattr(trainer, "_clip_grad_norm")
                                             else (trainer.accelerator, "clip_grad_norm_"))
        clipping = getattr(self._clip_owner, self._clip_name)
        self._clipping = clipping

        def clip(*a, **k):
            if self.active:
                self._pre_norm()
            return clipping(*a, **k)

        setattr(self._clip_owner, self._clip_name, clip)

    @_guarded
    def _pre_norm(self) -> None:
        self._pre = _norm([p.grad for p in self._trainable() if p.grad is not None])

    def _trainable(self) -> list:
        return [p for p in self.trainer.model.parameters() if p.requires_grad]

    @_guarded
    def _hook(self, optimizer: Any) -> None:
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds torch's
        if self._optimizer is inner:
            return
        self._optimizer = inner
        cls = type(inner)
        self.record.optimizer = f"{cls.__module__}.{cls.__name__}"
        first = inner.param_groups[0]
        self.record.hyper = {k: _plain(first.get(k)) for k in ("betas", "eps", "fused", "foreach", "amsgrad",
                                                               "maximize")}
        import torch

        if not isinstance(inner, torch.optim.AdamW) or first.get("amsgrad") or first.get("maximize"):
            self.record.update_not_judged = (f"{self.record.optimizer} is not torch's plain AdamW, which the "
                                             f"suite's formula covers (e.g. bitsandbytes' 8-bit AdamW keeps "
                                             f"block-quantized moments)")
        self._groups(inner)
        self.record.dtypes = sorted({str(p.dtype).replace("torch.", "") for p in self._trainable()})
        low = [d for d in self.record.dtypes if d in LOW_PRECISION]
        if low and self.record.update_not_judged is None:
            self.record.update_not_judged = (f"{'/'.join(low)} parameters: one step's update (the rate times about "
                                             f"1) is below their rounding, which no formula can tell apart")
        inner.register_step_pre_hook(lambda opt, a, k: self._before(opt))
        inner.register_step_post_hook(lambda opt, a, k: self._after(opt))

    def _groups(self, optimizer: Any) -> None:
        modules = dict(self.trainer.model.named_modules())
        named = {id(p): n for n, p in self.trainer.model.named_parameters()}
        self._params = named
        seen: set[int] = set()
        for group in optimizer.param_groups:
            counts: dict[str, int] = {}
            examples: dict[str, str] = {}
            for p in group["params"]:
                seen.add(id(p))
                name = named.get(id(p), "?")
                kind = param_kind(name, modules.get(name.rsplit(".", 1)[0]))
                counts[kind] = counts.get(kind, 0) + 1
                examples.setdefault(kind, name)
            self.record.groups.append(GroupSeen(float(group.get("weight_decay", 0.0)), counts, examples))
        self.record.unassigned = [n for n, p in self.trainer.model.named_parameters()
                                  if p.requires_grad and id(p) not in seen][:20]

    @_guarded
    def _before(self, optimizer: Any) -> None:
        if not self.active:
            return
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        step = len(self.record.steps) + 1
        self.record.steps.append(StepSeen(step, [float(g["lr"]) for g in optimizer.param_groups],
                                          [float(g.get("weight_decay", 0.0)) for g in optimizer.param_groups],
                                          self._pre, _norm(grads)))
        self._pre = None
        middle = max(3, int(self.record.args.get("max_steps") or 0) // 2)
        if self.record.update_not_judged is None and (step in UPDATE_STEPS or step == middle):
            self._snapshot = self._take(optimizer, step)

    def _take(self, optimizer: Any, step: int) -> list:
        out, elements = [], 0
        for group in optimizer.param_groups:
            for p in group["params"]:
                state = optimizer.state.get(p) or {}
                if p.grad is None or "exp_avg" not in state or elements + p.numel() > UPDATE_ELEMENTS:
                    continue
                elements += p.numel()
                count = int(state["step"].item() if hasattr(state["step"], "item") else state["step"])
                out.append((p, p.detach().clone(), p.grad.detach().clone(), state["exp_avg"].detach().clone(),
                            state["exp_avg_sq"].detach().clone(), count + 1, group))
        return out

    @_guarded
    def _after(self, optimizer: Any) -> None:
        import torch

        if not self.active or not self._snapshot:
            return
        step, rel, worst, elements, dtypes = len(self.record.steps), 0.0, 0.0, 0, set()
        for p, before, g, m, v, count, group in self._snapshot:
            expected = adamw_expected(before, g, m, v, count, float(group["lr"]), float(group["weight_decay"]),
                                      tuple(group["betas"]), float(group["eps"]))
            wanted = expected - before.to(torch.float64)
            diff = (p.detach().to(torch.float64) - expected).abs()
            off = diff.max().item()
            # beyond the parameter's own rounding (2 ulp: the decay's and the step's), relative to the update:
            # a parameter near 1 moving by a rate of 1e-4 is a few ulp from any formula in its own dtype
            excess = (diff - 2 * torch.finfo(p.dtype).eps * expected.abs()).clamp(min=0).max().item()
            scale = wanted.abs().max().item()
            rel = max(rel, excess / scale if scale > 0 else (0.0 if excess == 0 else float("inf")))
            worst, elements = max(worst, off), elements + p.numel()
            dtypes.add(str(p.dtype).replace("torch.", ""))
        self.record.updates.append(UpdateSeen(step, len(self._snapshot), elements, rel, worst, sorted(dtypes)))
        self._snapshot = None

    def finish(self) -> Mechanics:
        """After train(): stop recording (the profiled step after it is not training), put the clip back;
        the record (suite/train/run.py adds the LoRA probe once the trained model is probed)."""
        self.active = False
        if self._clip_owner is not None:
            setattr(self._clip_owner, self._clip_name, self._clipping)
        return self.record


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(getattr(value, "value", value))


def lora_probe(model: Any) -> LoraSeen:
    """Every LoRA Linear layer in eval mode on a fixed random input: the ratio of what the adapter adds,
    `layer(x) - layer.base_layer(x)`, to `x A^T B^T` (least squares), and the residual of that fit."""
    import torch

    ratios, residual, skipped, dtypes = [], 0.0, {}, set()
    training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(PROBE_SEED)
    try:
        with torch.no_grad():
            for module in model.modules():
                why = _not_judged(module)
                if why == "":
                    continue
                if why:
                    skipped[why] = skipped.get(why, 0) + 1
                    continue
                for adapter in module.active_adapters:
                    if adapter not in module.lora_A:
                        continue
                    ratio, res, dtype = _layer_ratio(module, adapter, gen)
                    if ratio is not None:
                        ratios.append(ratio)
                        residual = max(residual, res)
                        dtypes.add(dtype)
    finally:
        model.train(training)
    return LoraSeen(len(ratios), min(ratios) if ratios else None, max(ratios) if ratios else None,
                    residual if ratios else None, skipped, sorted(dtypes))


def _not_judged(module: Any) -> str | None:
    """"" for a module that is no LoRA layer, a reason for one not judged, None for a LoRA Linear layer."""
    import torch

    if type(module).__name__ == "ParamWrapper":
        return "target_parameters (a wrapped parameter, not a Linear)"
    if not hasattr(module, "lora_A") or not hasattr(module, "base_layer"):
        return ""
    if any(getattr(module, "use_dora", {}).get(a) for a in module.active_adapters):
        return "DoRA (the magnitude vector rescales the sum)"
    if not isinstance(module.base_layer, torch.nn.Linear):
        return f"a LoRA {type(module.base_layer).__name__} layer"
    return None


def _layer_ratio(module: Any, adapter: str, gen: Any) -> tuple[float | None, float, str]:
    import torch

    a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
    base = module.base_layer
    dtype = getattr(base, "compute_dtype", None) or (base.weight.dtype if base.weight.is_floating_point()
                                                     else a.dtype)
    x = torch.randn(PROBE_ROWS, a.shape[1], generator=gen).to(device=a.device, dtype=dtype)
    delta = (module(x) - base(x)).to(torch.float64)
    xab = x.to(torch.float64) @ a.to(torch.float64).T @ b.to(torch.float64).T
    denom = (xab * xab).sum().item()
    if denom == 0:
        return None, 0.0, str(a.dtype)
    ratio = (delta * xab).sum().item() / denom
    fitted = ratio * xab
    scale = fitted.abs().max().item()
    res = (delta - fitted).abs().max().item() / scale if scale > 0 else 0.0
    return ratio, res, str(a.dtype).replace("torch.", "")
