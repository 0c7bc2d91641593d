"""What this machine has: GPUs (asked of NVML, so that the parent makes no CUDA context) and the
CPU features that decide how its floating-point kernels round."""
from __future__ import annotations

import functools
import os
import platform


def gpus_from_nvml() -> list[dict]:
    """GPU names and memory without creating a CUDA context in this process."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver: a CPU machine
        return []
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                        "memory_gib": round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30, 2)})
        return out
    finally:
        pynvml.nvmlShutdown()


# CPU features that pick the floating-point kernels torch and bitsandbytes run on a CPU.
KERNEL_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict:
    """The CPU as the kernels see it: vendor, model name and the kernel-relevant feature flags."""
    vendor = model = None
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and vendor is None:
                    vendor = value.strip()
                elif key in ("model name", "Model") and model is None:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"vendor": vendor, "model": model or platform.processor() or None,
            "flags": [f for f in KERNEL_FLAGS if f in flags]}


def torch_cpu_capability() -> str | None:
    """The vector ISA torch's CPU kernels dispatch to (AVX512, AVX2, DEFAULT, ...): it decides their
    rounding; ATEN_CPU_CAPABILITY lowers it."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def visible_gpu_count() -> int:
    """CUDA GPUs a child would see: NVML's count, cut to CUDA_VISIBLE_DEVICES when it is set."""
    if not cuda_available():
        return 0
    count = len(gpus_from_nvml())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        listed = 0
        for dev in visible.split(","):  # CUDA stops at the first invalid entry
            if dev.strip() in ("", "-1"):
                break
            listed += 1
        count = min(count, listed)
    return count


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when a CUDA GPU is usable. Asks NVML first so the parent makes no CUDA context."""
    if gpus_from_nvml():
        import torch

        return torch.version.cuda is not None
    return False
