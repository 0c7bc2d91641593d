"""Kernel classes: a short name for what decides the numerics of a run on a machine, so that golden
curves, tight bounds and budgets are kept and judged per class instead of per CPU model.

A class is derived from what the libraries themselves report and branch on (the child's
`device.kernels`, suite/train/probes.kernel_profile), never from the CPU's model string.

On a CPU (measured 2026-12-05 on an AMD EPYC with AVX2, an Intel Xeon with AVX-512, AVX512-BF16 and
AMX, and an AMD EPYC Zen 4 with AVX-512 and AVX512-BF16 but no AMX; docs/kernel-classes.md):
- `bitsandbytes.avx512bf16` (bitsandbytes' `has_avx512bf16()`, read from cpuid): with it, the first
  no-grad forward of a `Linear4bit` in eval mode repacks its weights for a bf16 GEMM and every later
  forward, training ones included, runs that GEMM; the 8-bit paths differ too. It moves every QLoRA,
  8-bit and 8-bit-optimizer curve, so it weighs most.
- `torch_cpu_capability` (AVX2, AVX512, ...): torch's vector kernels, and bitsandbytes uses
  `torch._int_mm` for int8 and another 4-bit dequantize when torch reports AVX512.
- `bitsandbytes.kernels_package`: bitsandbytes loads its 4-bit GEMM from the optional `kernels`
  package when that imports (not installed by the suite).
Measured not to matter, so left out: AMX (`ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16` on the Intel machine
changed no number, and the AMD Zen 4, which has no AMX, gives the Intel machine's curves bit for bit),
the CPU vendor and model, and `ATEN_CPU_CAPABILITY=avx2` on the Intel machine (same numbers).

On a GPU: the compute capability (H100 and H200 are both sm_90: one class, two memory profiles),
bitsandbytes' CUDA library and whether TF32 matmuls are allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# feature -> weight in "nearest class": the class that shares the most weight of numerics-deciding
# features is nearest; ties go to the class whose name sorts first.
CPU_FEATURES: dict[str, int] = {"bnb_avx512bf16": 4, "torch_cpu_capability": 2, "bnb_kernels_package": 1}
GPU_FEATURES: dict[str, int] = {"cuda_capability": 4, "bnb_library": 2, "tf32": 1}
UNKNOWN = "unknown"


@dataclass(frozen=True)
class KernelClass:
    """One kernel class: a name (a folder under results/baselines/<profile>/) and the features it stands for.

    Built here only (tests/test_architecture.py): once per run from what the child reported (`of_kernels`,
    suite/judge/judging.py), read back from a record (`recorded`, suite/records/record.py), or known by a
    name (`from_name`) or a reference's header (`of_reference`); everyone else is handed the object."""

    name: str
    features: tuple[tuple[str, str], ...]
    # what the child reported (its device.kernels) where the class was derived from it; {} for a class
    # known by its name. Provenance only: two classes of one name and features are the same class.
    kernels: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def feature_map(self) -> dict[str, str]:
        return dict(self.features)

    def shared_weight(self, other: KernelClass) -> int:
        weights = {**CPU_FEATURES, **GPU_FEATURES}
        mine, theirs = self.feature_map, other.feature_map
        return sum(weights.get(k, 0) for k, v in mine.items() if theirs.get(k) == v)

    def describe(self) -> str:
        return f"{self.name} ({', '.join(f'{k} {v}' for k, v in self.features)})"


def _flag(value) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def of_kernels(kernels: dict | None) -> KernelClass:
    """The class of a run from its `device.kernels` (what the child reported)."""
    kernels = kernels or {}
    if kernels.get("cuda_capability"):
        cc = str(kernels["cuda_capability"])
        bnb = kernels.get("bitsandbytes") or {}
        feats = (("cuda_capability", cc), ("bnb_library", str(bnb.get("library") or "none")),
                 ("tf32", _flag(kernels.get("tf32"))))
        name = f"sm{cc.replace('.', '')}" + ("-tf32" if kernels.get("tf32") else "")
        return KernelClass(name, feats, kernels)
    cap = kernels.get("torch_cpu_capability")
    if not cap:
        return KernelClass(UNKNOWN, (), kernels)
    bnb = kernels.get("bitsandbytes") or {}
    bf16, hub = bnb.get("avx512bf16"), bnb.get("kernels_package")
    feats = (("bnb_avx512bf16", _flag(bf16)), ("torch_cpu_capability", str(cap)),
             ("bnb_kernels_package", _flag(hub)))
    name = str(cap).lower() + ("-bf16" if bf16 else "") + ("-hubgemm" if hub else "")
    return KernelClass(name, feats, kernels)


def recorded(name: str | None, kernels: dict | None) -> KernelClass:
    """The class a record was judged under, read back: derived from its `device.kernels` (a record
    written before classes were named has only those), under the name it was recorded with where that
    differs (the record keeps the verdict's class even if naming changes)."""
    derived = of_kernels(kernels)
    if name is None or name == derived.name:
        return derived
    return KernelClass(name, derived.features or from_name(name).features, derived.kernels)


def of_reference(doc: dict, folder: str | None = None) -> KernelClass:
    """A reference curve's class (suite/judge/baselines.py): as its header names it, under the name of
    the folder it lies in where given; a reference recorded before classes were named: from its
    hardware fields."""
    if doc.get("kernel_class"):
        own = from_name(doc["kernel_class"], doc.get("kernel_features"))
    else:
        hw = doc.get("hardware") or {}
        bnb = hw.get("bitsandbytes_backend") or ""
        own = of_kernels({"torch_cpu_capability": hw.get("torch_cpu_capability"),
                          "bitsandbytes": {"avx512bf16": "avx512bf16 True" in bnb}})
    return own if folder is None else from_name(folder, own.feature_map)


def nearest(target: KernelClass, candidates: list[KernelClass]) -> KernelClass | None:
    """The candidate sharing the most weight of features with `target`; ties by name; None if none."""
    others = [c for c in candidates if c.name != target.name]
    if not others:
        return None
    return sorted(others, key=lambda c: (-target.shared_weight(c), c.name))[0]


def from_name(name: str, features: dict[str, str] | None = None) -> KernelClass:
    """A class known by its name (a folder, a budget entry), with the features recorded with it or,
    where none were, those its name stands for (of_kernels names classes this way)."""
    if features is None:
        head, *rest = name.split("-")
        if head.startswith("sm") and head[2:].isdigit():
            features = {"cuda_capability": f"{head[2:-1]}.{head[-1]}", "tf32": "yes" if "tf32" in rest else "no"}
        elif head and head != UNKNOWN:
            features = {"bnb_avx512bf16": "yes" if "bf16" in rest else "no", "torch_cpu_capability": head.upper(),
                        "bnb_kernels_package": "yes" if "hubgemm" in rest else "no"}
    return KernelClass(name, tuple((features or {}).items()))
