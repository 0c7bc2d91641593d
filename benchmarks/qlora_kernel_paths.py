"""How far bitsandbytes' CPU 4-bit kernel paths move a QLoRA forward and backward from an fp32
computation on the same (dequantized) weights, on this machine's kernel class.

    python -m benchmarks.qlora_kernel_paths            # prints a table; --json for the numbers

Paths measured on one NF4 `Linear4bit` (double quantization, bf16 compute, as the suite's QLoRA cases):
- `train`: a training-mode forward (the dequantize + matmul path every class runs while training);
- `packed`: after one eval-mode no-grad forward, on a CPU where bitsandbytes' `has_avx512bf16()` is
  true the weights are repacked for a bf16 GEMM (absmax rounded to bf16) and **every later forward,
  training ones included, runs that GEMM**; on an AVX2 CPU nothing is repacked and `packed` equals
  `train`. The backward through the packed path is measured too (does a gradient reach the input?).
Another class's numbers need that class's CPU: run this there (docs/kernel-classes.md).
"""
from __future__ import annotations

import argparse
import json


def measure(n: int = 256, k: int = 256, batch: int = 16, seed: int = 0) -> dict:
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    import torch

    torch.manual_seed(seed)
    weight = torch.randn(n, k) * 0.02
    layer = bnb.nn.Linear4bit(k, n, bias=False, compute_dtype=torch.bfloat16, compress_statistics=True,
                              quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False, compress_statistics=True,
                                     quant_type="nf4", module=layer)
    layer = layer.to("cpu")  # quantizes
    qs = layer.weight.quant_state
    w_fp32 = F.dequantize_4bit(layer.weight.data, qs).float()  # the weights the layer stands for
    x = torch.randn(batch, k)
    reference = x @ w_fp32.T
    upstream = torch.randn(batch, n)
    ref_grad = upstream @ w_fp32

    def run() -> tuple:
        xi = x.clone().requires_grad_(True)
        out = layer(xi)
        grad = None
        if out.requires_grad:
            (out.float() * upstream).sum().backward()
            grad = xi.grad
        return out.float().detach(), grad

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max())

    layer.train()
    out_train, grad_train = run()
    layer.eval()
    with torch.no_grad():
        layer(x)  # the eval-mode forward an evaluation (or a probe) makes
    packed = bool(getattr(layer.weight.quant_state, "packing_format_for_cpu", False))
    layer.train()
    out_packed, grad_packed = run()
    return {"kernel": {"torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
                       "bnb_avx512bf16": bool(F.has_avx512bf16())},
            "repacked_after_eval_forward": packed,
            "forward_rel_err_train": rel(out_train, reference),
            "forward_rel_err_packed": rel(out_packed, reference),
            "forward_packed_vs_train": rel(out_packed, out_train),
            "input_grad_rel_err_train": rel(grad_train, ref_grad) if grad_train is not None else None,
            "input_grad_rel_err_packed": rel(grad_packed, ref_grad) if grad_packed is not None else None,
            "input_grad_reaches_input_packed": grad_packed is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = measure()
    if args.json:
        print(json.dumps(out, indent=1))
        return
    for key, value in out.items():
        print(f"{key:36s} {value}")


if __name__ == "__main__":
    main()
