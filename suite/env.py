"""The environment a run happened in, and what a case needs that this machine may lack."""
from __future__ import annotations

import functools
import importlib.metadata as md
import importlib.util
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from suite.cases import Case

# The stack under test: what the control lock pins at the top, golden curves record, envs check.
STACK = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes")
# Every package whose version a run records.
PACKAGES = (*STACK, "unsloth", "flash-attn", "safetensors", "tokenizers", "pytest", "pytest-benchmark")
# bitsandbytes runs 4-bit nf4 on a CPU from this release on.
BNB_CPU_4BIT = "0.46.0"


def package_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _vtuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def version_at_least(version: str | None, minimum: str) -> bool:
    return version is not None and _vtuple(version) >= _vtuple(minimum)


def git_commit(root: Path | None = None) -> dict:
    root = root or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha or None, "dirty": dirty if sha else None}


def _gpus_from_nvml() -> list[dict]:
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


@functools.lru_cache(maxsize=1)
def capture() -> dict:
    """Provenance for a run: packages, python, torch's CUDA, GPUs, host, the suite's commit."""
    import torch  # the version's build tag (+cpu, +cu128) and CUDA are only known to torch itself

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "cpu": cpu_info(),
        "torch": {"version": torch.__version__, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                  "cpu_capability": torch_cpu_capability()},
        "gpus": _gpus_from_nvml(),
        "suite": git_commit(),
    }


def visible_gpu_count() -> int:
    """CUDA GPUs a child would see: NVML's count, cut to CUDA_VISIBLE_DEVICES when it is set."""
    if not cuda_available():
        return 0
    count = len(_gpus_from_nvml())
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
    if _gpus_from_nvml():
        import torch

        return torch.version.cuda is not None
    return False


def missing_requirements(case: Case) -> list[str]:
    """What this machine lacks to run the case, each said so a user knows what to install or set."""
    missing = []
    if case.distributed:
        from suite.cases import WORLD_SIZE

        gpus = visible_gpu_count()
        if gpus < WORLD_SIZE:
            missing.append(f"at least {WORLD_SIZE} CUDA GPUs (for {case.distributed}); {gpus} visible")
    elif case.needs_gpu and not cuda_available():
        why = []
        if case.model.size == "7b":
            why.append("a 7B model")
        if case.method == "unsloth":
            why.append("unsloth")
        if "flash_attn" in case.features:
            why.append("flash-attention 2")
        missing.append(f"a CUDA GPU (for {', '.join(why)}); none is visible here")
    if case.method == "unsloth" and importlib.util.find_spec("unsloth") is None:
        missing.append("the package unsloth (pip install unsloth), not installed")
    if "flash_attn" in case.features and importlib.util.find_spec("flash_attn") is None:
        missing.append("the package flash-attn (pip install flash-attn), not installed")
    if case.method in ("qlora", "unsloth"):
        bnb = package_version("bitsandbytes")
        if bnb is None:
            missing.append("the package bitsandbytes (pip install bitsandbytes), not installed")
        elif not case.needs_gpu and not cuda_available() and not version_at_least(bnb, BNB_CPU_4BIT):
            missing.append(f"bitsandbytes>={BNB_CPU_4BIT} for 4-bit on a CPU (installed: {bnb})")
    from suite import compat

    missing += compat.cannot_express(case)
    if case.model.size != "tiny":
        from suite import models

        try:
            models.resolve(case.model.size, hub_id=case.model.hub_id, env=case.model.env, path=case.model.path,
                           config=case.model.config, materialise=False)
        except models.ModelNotAvailable as exc:
            missing.append(str(exc))
    return missing
