"""Checks of a mixture of experts' cases: the adapter holds the expert LoRA tensors the case's
target_parameters asked for, and a 4-bit base is quantized where the case says it is (bitsandbytes
quantizes nn.Linear layers only, so a mixture of experts' fused 3-D experts stay in the compute dtype)."""
from __future__ import annotations

from dataclasses import dataclass

from suite.judge.checkpoint import Inventory
from suite.train.payload import Params, Quantized


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    message: str
    value: float | None = None
    bound: float | None = None


@dataclass(frozen=True)
class ExpertAdapters:
    """Every layer's targeted parameter has its LoRA pair in the adapter file, with peft's per-expert
    shapes: lora_A (r x experts, in), lora_B (out, r x experts)."""

    targets: tuple[str, ...]
    layers: int
    r: int
    name: str = "expert_lora"

    def evaluate(self, case_id: str, inv: Inventory, params: Params) -> CheckOutcome:
        wrapped = params.parameter_adapters or []
        saved = {t.name: t.shape for t in inv.tensors}
        problems, found = [], []
        for target in self.targets:
            mine = [w for w in wrapped if w["parameter"].endswith("." + target)]
            if len(mine) != self.layers:
                problems.append(f"{target}: wrapped in {len(mine)} of {self.layers} layers")
            for w in mine:
                problems += self._pair(w, saved)
                found.append(w)
        n = 2 * len(found)
        if problems:
            return CheckOutcome(False, f"{case_id}: the adapter lacks expert LoRA tensors the case asked for "
                                       f"(target_parameters {', '.join(self.targets)}): " + "; ".join(problems[:4]),
                                n, 2 * len(self.targets) * self.layers)
        shapes = sorted({f"{w['parameter'].split('.')[-1]} {tuple(w['shape'])}: A {tuple(w['lora_A_shape'])}, "
                         f"B {tuple(w['lora_B_shape'])}" for w in found})
        return CheckOutcome(True, f"{case_id}: the adapter holds the {n} expert LoRA tensors the case asked for "
                                  f"({len(self.targets)} parameters x {self.layers} layers x A, B; "
                                  + "; ".join(shapes) + ")", n, n)

    def _pair(self, w: dict, saved: dict) -> list[str]:
        experts = w["shape"][0] if len(w["shape"]) == 3 else 1
        out = []
        for part, dim in (("lora_A", 0), ("lora_B", 1)):
            shape = saved.get(w[part])
            if shape is None:
                out.append(f"no {w[part]} in the adapter file")
            elif list(shape) != w[f"{part}_shape"] or shape[dim] != self.r * experts:
                out.append(f"{w[part]} is {shape}, expected {w[f'{part}_shape']} (rank {self.r} x {experts} experts)")
        return out


@dataclass(frozen=True)
class QuantizedWhere:
    """A 4-bit base holds exactly the unquantized weights the case declares (checks.unquantized), and
    says how much of the base the 4-bit storage covers: a bits-per-parameter figure of the quantized
    weights alone would read as the whole base's."""

    declared: tuple[str, ...]
    name: str = "quantized_base"

    def evaluate(self, case_id: str, q: Quantized) -> CheckOutcome:
        left = q.unquantized or {}
        other = sum(left.values())
        share = q.params / (q.params + other) if q.params + other else 0.0
        kept = ", ".join(f"{k} ({v})" for k, v in sorted(left.items())) or "nothing"
        figure = (f"{q.params} weight parameters in 4-bit at {q.bits_per_param:.4f} bits per parameter, "
                  f"{share:.1%} of the base's weights (embeddings and head apart); left unquantized: {kept}")
        surprise = sorted(set(left) - set(self.declared))
        missing = sorted(set(self.declared) - set(left))
        if surprise or missing:
            why = ([f"unquantized but not declared: {', '.join(surprise)}"] if surprise else []) + \
                  ([f"declared unquantized but quantized: {', '.join(missing)}"] if missing else [])
            return CheckOutcome(False, f"{case_id}: the 4-bit base is not quantized where the case says: "
                                       + "; ".join(why) + f" ({figure})", share, None)
        return CheckOutcome(True, f"{case_id}: {figure}", share, None)
