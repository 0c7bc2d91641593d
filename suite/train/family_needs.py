"""What some tiny family cases need beyond the control stack, found by running cases/families_extended.yaml: each
said as a skip that names what is missing and why (suite/run/requirements.py), never a failure hidden.

Light on purpose (the parent reads it to decide a skip): no torch, no transformers. tests/train/test_family_needs.py
holds the tables to the real models and the real error."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from suite.matrix.spec import Case

# bitsandbytes' 4-bit Linear on a CPU with AVX512-BF16 repacks its weight for inference (eval mode without grad:
# the reload's forward, DPO's reference forward) in blocks of 32 output features and asserts on any other width
# ("N must be divisible by block_n", bitsandbytes.functional._convert_weight_packed_for_cpu, 0.50.2). These tiny
# models have narrower quantized layers (at full size they are multiples of 32). Found 2026-12-07 on the 2-core AMD
# EPYC Zen 4 (kernel class avx512-bf16): tiny-qwen3.5/qlora and tiny-gemma4/qlora errored there.
CPU_4BIT_BLOCK = 32
CPU_4BIT_NARROW: dict[str, str] = {
    "qwen3_5": "linear_attn.in_proj_a and linear_attn.in_proj_b (4 output features: one per value head)",
    "gemma4": "per_layer_input_gate (16 output features: hidden_size_per_layer_input)",
}
CPU_4BIT_FLAG = "avx512_bf16"  # the CPU feature bitsandbytes repacks on (suite/machine.py's KERNEL_FLAGS)

# transformers' gated-DeltaNet layers keep packed sequences apart only through causal-conv1d's kernel (a CUDA
# package); without it Qwen3.5 refuses packed rows ("`causal_conv1d_fn` can't keep packed sequences apart without
# `causal_conv1d`"): the torch fallback would mix the sequences of a row. Found 2026-12-07, transformers 5.23.
PACKED_NEEDS: dict[str, tuple[str, str]] = {"qwen3_5": ("causal_conv1d", "causal-conv1d")}


def family_lacks(case: Case, cuda: bool, cpu_flags: Iterable[str], installed) -> list[str]:
    """What this machine lacks to run a family's tiny case (`installed(module) -> bool`), each with why."""
    arch, missing = case.model.arch or "", []
    if case.quantization.bits == 4 and not cuda and arch in CPU_4BIT_NARROW and CPU_4BIT_FLAG in set(cpu_flags):
        missing.append(f"a CUDA GPU or a CPU without {CPU_4BIT_FLAG} for 4-bit {arch}: bitsandbytes' CPU 4-bit "
                       f"inference on {CPU_4BIT_FLAG} repacks each layer in blocks of {CPU_4BIT_BLOCK} output "
                       f"features and refuses the tiny model's {CPU_4BIT_NARROW[arch]} (\"N must be divisible by "
                       f"block_n\")")
    if case.uses.packs and arch in PACKED_NEEDS and not installed(PACKED_NEEDS[arch][0]):
        module, pip = PACKED_NEEDS[arch]
        missing.append(f"the package {pip} (pip install {pip}; CUDA), not installed: {arch}'s linear-attention layers "
                       f"keep packed sequences apart only through its kernel (transformers refuses packed rows "
                       f"without it)")
    return missing
