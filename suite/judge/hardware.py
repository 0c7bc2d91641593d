"""Hardware profiles (which budgets apply) and the peak-FLOPs table (for MFU), in one place.

Peak figures are dense (no sparsity) tensor-core throughput from the vendors' datasheets:
  H100 SXM / H200 SXM: 989 TFLOP/s bf16/fp16, 494 tf32, 67 fp32 (NVIDIA H100/H200 datasheets)
  A100 (40/80 GB SXM): 312 bf16/fp16, 156 tf32, 19.5 fp32 (NVIDIA A100 datasheet)
  L4: 121 bf16/fp16, 60 tf32, 30 fp32 (NVIDIA L4 datasheet)
  T4: 65 fp16, no bf16 tensor cores, 8.1 fp32 (NVIDIA T4 datasheet)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from suite import machine
from suite.records import provenance

TERA = 1e12
# The profile of a machine with no GPU: its budgets gate CPU time per step, not wall time (budgets.py)
CPU_PROFILE = "cpu"


@dataclass(frozen=True)
class Profile:
    name: str
    gpu_pattern: str | None  # regex on the GPU name; None for the CPU profile
    min_memory_gib: float = 0.0
    max_memory_gib: float = float("inf")
    peak_flops: dict[str, float] = field(default_factory=dict)  # precision -> FLOP/s


PROFILES: tuple[Profile, ...] = (
    Profile("h200-141gb", r"H200", 120, 160, {"bf16": 989 * TERA, "fp16": 989 * TERA, "fp32": 67 * TERA}),
    Profile("h100-80gb", r"H100", 70, 100, {"bf16": 989 * TERA, "fp16": 989 * TERA, "fp32": 67 * TERA}),
    Profile("a100-80gb", r"A100", 70, 100, {"bf16": 312 * TERA, "fp16": 312 * TERA, "fp32": 19.5 * TERA}),
    Profile("a100-40gb", r"A100", 30, 50, {"bf16": 312 * TERA, "fp16": 312 * TERA, "fp32": 19.5 * TERA}),
    Profile("l4-24gb", r"\bL4\b", 16, 30, {"bf16": 121 * TERA, "fp16": 121 * TERA, "fp32": 30 * TERA}),
    Profile("t4-16gb", r"\bT4\b", 10, 20, {"fp16": 65 * TERA, "fp32": 8.1 * TERA}),
    Profile(CPU_PROFILE, None),
)


def profile_named(name: str) -> Profile:
    for p in PROFILES:
        if p.name == name:
            return p
    return Profile(name, None)  # a user-defined profile: budgets may exist for it, no peak table


def detect_profile(gpus: list[dict]) -> Profile:
    """The profile of the first GPU (name and memory from NVML), or `cpu` when there is none."""
    if not gpus:
        return profile_named(CPU_PROFILE)
    name, mem = gpus[0].get("name", ""), gpus[0].get("memory_gib", 0.0)
    for p in PROFILES:
        if p.gpu_pattern and re.search(p.gpu_pattern, name) and p.min_memory_gib <= mem <= p.max_memory_gib:
            return p
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"
    return Profile(f"{slug}-{round(mem)}gb", None)


def current() -> Profile:
    """This machine's profile: the first GPU's when torch can use CUDA, else `cpu`."""

    return detect_profile(provenance.capture()["gpus"] if machine.cuda_available() else [])


def flops_per_token(total_params: int, trainable_params: int, embedding_params: int, n_layers: int,
                    hidden: int, seq_len: float, full: bool) -> float:
    """Model FLOPs of one trained token (recomputation from gradient checkpointing not counted).

    Matmul parameters N exclude the input embedding (a lookup). Full fine-tune: 6N (forward 2N,
    backward 4N). Adapter with a frozen base: forward 2N, activation gradients 2N, weight gradients
    only for the trainable T: 4N + 2T. Attention scores and values add 12 * layers * hidden * seq
    either way (PaLM, Chowdhery et al. 2022, appendix B), seq being the mean sequence length.
    """
    n = max(total_params - embedding_params, 0)
    dense = 6 * n if full else 4 * n + 2 * trainable_params
    return dense + 12 * n_layers * hidden * seq_len


# Counted and analytic FLOPs of a step agree within this on a plain case (measured on the tiny cases:
# LoRA 0.99, full fine-tune 1.03); outside it, the record says which of the two is wrong.
FLOPS_AGREE = 0.10


def flops_disagreement(ratio: float, recomputes: bool, four_bit: bool) -> str | None:
    """Why the counted FLOPs of a step (torch.utils.flop_counter) and the analytic FLOPs of its
    tokens (flops_per_token) differ by `ratio` = counted / analytic, and which figure is wrong;
    None where they agree."""
    if abs(ratio - 1) <= FLOPS_AGREE:
        return None
    if ratio > 1 and recomputes:
        return (f"counted {ratio:.2f}x the analytic FLOPs: gradient checkpointing recomputes the forward, which "
                "the counter sees and the MFU formula leaves out by convention; both are right about what they "
                "measure (work done vs the model's FLOPs)")
    if ratio < 1 and four_bit:
        return (f"counted {ratio:.2f}x the analytic FLOPs: torch's flop counter has no formula for bitsandbytes' "
                "4-bit matmul kernels and misses them; the analytic figure is right")
    return (f"counted {ratio:.2f}x the analytic FLOPs with no known cause: either the step does work the model "
            "does not need (an extra forward, an upcast, a larger matmul: the counter is right) or "
            "flops_per_token misses this architecture (suite/judge/hardware.py is wrong)")
