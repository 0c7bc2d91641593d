"""The raw facts a GPU kernel class is made of, read once at the start of a GPU session
(benchmarks/gpu_session.py), whatever the cases then do.

What suite/kernelclass.py branches on today (the compute capability, bitsandbytes' CUDA
library, whether TF32 matmuls are allowed), what a class may come to depend on (the SDPA backends
torch allows, and which of them run a padded batch of the 7B shape), and where they were read: the
device (nvidia-smi), torch and CUDA, the image's packages and the carried ones, `pip check`.
Each section is read on its own: one that fails records its error and the others are kept.

    python3 -m benchmarks.gpu_facts OUT.json     # prints the kernel class and the SDPA table
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

# Llama-2-7B's attention (32 heads of 128) on the 7B cases' batches (4 x 512 tokens, cases/_base.yaml)
SDPA_SHAPE = {"batch": 4, "heads": 32, "seq": 512, "head_dim": 128}


def _section(out: dict, name: str, read) -> None:
    try:
        out[name] = read()
    except Exception as exc:  # one unreadable fact must not lose the others
        out[name] = {"error": f"{type(exc).__name__}: {exc}", "where": traceback.format_exc(limit=-2)[-600:]}


def nvidia_smi() -> dict:
    fields = "name,memory.total,driver_version,compute_cap,clocks.max.sm,power.limit"
    proc = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True,
                          text=True, timeout=30)
    rows = [dict(zip(fields.split(","), (v.strip() for v in line.split(",")))) for line in proc.stdout.splitlines()]
    return {"gpus": rows, "rc": proc.returncode}


def torch_facts() -> dict:
    import torch

    out = {"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           # TF32: what the kernel class's `tf32` feature reads (kernel_profile), and the other two switches
           "tf32": {"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                    "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                    "float32_matmul_precision": torch.get_float32_matmul_precision()}}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out["device"] = {"name": p.name, "capability": f"{p.major}.{p.minor}",
                         "multiprocessors": p.multi_processor_count,
                         "total_memory_bytes": p.total_memory, "l2_cache_bytes": getattr(p, "L2_cache_size", None),
                         "arch_list": torch.cuda.get_arch_list()}
        b = torch.backends.cuda
        out["sdpa_enabled"] = {"flash": b.flash_sdp_enabled(), "mem_efficient": b.mem_efficient_sdp_enabled(),
                               "math": b.math_sdp_enabled(), "cudnn": getattr(b, "cudnn_sdp_enabled", lambda: False)()}
    return out


def sdpa_runs(device: str = "cuda", shape: dict | None = None) -> dict:
    """Each SDPA backend alone on the 7B shape in bf16: causal (no mask) and padded (a boolean mask, as
    transformers passes for a padded batch); then which kernels torch's own choice ran for the padded one.
    (device="cpu" and a small shape: the same code on a CPU, for the tests.)"""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import ProfilerActivity, profile

    if device == "cuda" and not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    s = shape or SDPA_SHAPE
    q, k, v = (torch.randn(s["batch"], s["heads"], s["seq"], s["head_dim"], device=device, dtype=torch.bfloat16)
               for _ in range(3))
    lengths = torch.tensor([s["seq"] * (4 - i) // 4 for i in range(s["batch"])], device=device)
    keep = torch.arange(s["seq"], device=device)[None, :] < lengths[:, None]  # right padding
    causal = torch.ones(s["seq"], s["seq"], dtype=torch.bool, device=device).tril()
    mask = (causal[None, None] & keep[:, None, None, :])
    mask[:, :, :, 0] = True  # no all-masked row
    out: dict = {"shape": s, "dtype": "bfloat16"}
    for backend in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        row = {}
        for label, kwargs in (("causal", {"is_causal": True}), ("padded", {"attn_mask": mask})):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    with sdpa_kernel(getattr(SDPBackend, backend)):
                        F.scaled_dot_product_attention(q, k, v, **kwargs)
                        sync()
                        t0 = time.perf_counter()
                        for _ in range(5):
                            F.scaled_dot_product_attention(q, k, v, **kwargs)
                        sync()
                    row[label] = {"ran": True, "ms": round((time.perf_counter() - t0) / 5 * 1e3, 3)}
                except RuntimeError as exc:
                    why = " | ".join(str(w.message).splitlines()[0] for w in caught)[:500]
                    row[label] = {"ran": False, "error": str(exc).splitlines()[0][:200], "why": why}
        out[backend.lower()] = row
    with profile(activities=[ProfilerActivity.CUDA if device == "cuda" else ProfilerActivity.CPU]) as prof:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        sync()
    out["default_padded_kernels"] = sorted({e.key[:160] for e in prof.key_averages()
                                            if any(t in e.key.lower() for t in ("flash", "fmha", "attention", "cudnn",
                                                                                "efficient", "softmax", "gemm"))})[:12]
    return out


def kernel_class() -> dict:
    """The suite's own reading (suite/train/probes.py) and the class it names (suite/kernelclass.py)."""
    from suite.kernelclass import of_kernels
    from suite.train.probes import kernel_profile

    profile = kernel_profile()
    return {"kernels": profile, "class": of_kernels(profile).describe()}


def bitsandbytes_facts() -> dict:
    import bitsandbytes
    from bitsandbytes import cextension

    lib = getattr(getattr(cextension, "lib", None), "_lib", None)
    return {"version": bitsandbytes.__version__, "backend": getattr(cextension, "BNB_BACKEND", None),
            "library": str(getattr(lib, "_name", "") or "") or None}


def packages(site: str | None) -> dict:
    """Every installed distribution: the image's, and those under the carried --target folder."""
    from importlib import metadata

    image, carried = {}, {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        where = str(getattr(dist, "_path", ""))
        (carried if site and where.startswith(site) else image).setdefault(name, dist.version)
    return {"image": dict(sorted(image.items(), key=lambda kv: kv[0].lower())),
            "carried": dict(sorted(carried.items(), key=lambda kv: kv[0].lower())), "site": site}


def pip_check() -> dict:
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=60)
    return {"rc": proc.returncode, "lines": (proc.stdout + proc.stderr).strip().splitlines()[:60]}


def read(site: str | None = None) -> dict:
    started = time.time()
    out: dict = {"read_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": sys.version.split()[0],
                 "platform": platform.platform()}
    for name, fn in (("nvidia_smi", nvidia_smi), ("torch", torch_facts), ("bitsandbytes", bitsandbytes_facts),
                     ("kernel_class", kernel_class), ("sdpa_runs", sdpa_runs), ("packages", lambda: packages(site)),
                     ("pip_check", pip_check)):
        _section(out, name, fn)
    out["seconds"] = round(time.time() - started, 1)
    return out


def summary(f: dict) -> list[str]:
    t = f.get("torch") or {}
    dev = t.get("device") or {}
    lines = [f"device: {dev.get('name', 'no CUDA device')} (sm {dev.get('capability', '-')}, "
             f"{(dev.get('total_memory_bytes') or 0) / 2**30:.0f} GiB); torch {t.get('version')} CUDA {t.get('cuda')}",
             f"kernel class: {(f.get('kernel_class') or {}).get('class', f.get('kernel_class'))}",
             f"bitsandbytes: {f.get('bitsandbytes')}", f"TF32: {t.get('tf32')}",
             f"SDPA allowed: {t.get('sdpa_enabled')}"]
    runs = f.get("sdpa_runs") or {}
    for backend in ("flash_attention", "efficient_attention", "cudnn_attention", "math"):
        if backend in runs:
            row = runs[backend]
            cells = [f"{k}: {r['ms']:.3f} ms" if r.get("ran")
                     else f"{k}: no ({(r.get('why') or r.get('error', ''))[:90]})" for k, r in row.items()]
            lines.append(f"  {backend:20s} " + "  ".join(cells))
    if "default_padded_kernels" in runs:
        lines.append(f"  torch's choice, padded: {', '.join(runs['default_padded_kernels']) or '?'}")
    check = f.get("pip_check") or {}
    carried = {n.lower().replace("_", "-") for n in ((f.get("packages") or {}).get("carried") or {})}
    ours = [ln for ln in check.get("lines", []) if ln.split(" ")[0].lower().replace("_", "-") in carried]
    lines.append(f"pip check: rc {check.get('rc')}, {len(check.get('lines', []))} lines, {len(ours)} about the "
                 f"carried packages" + "".join(f"\n  {ln}" for ln in ours[:15]))
    return lines


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--site", help="the carried wheels' --target folder (its packages are listed apart)")
    args = ap.parse_args(argv)
    facts = read(args.site)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(facts, indent=1, default=str) + "\n")
    print("\n".join(summary(facts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
