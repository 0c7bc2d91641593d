"""Provenance of a run: packages, Python, torch's build and CUDA, GPUs, CPU, host, the suite's commit."""
from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from suite import machine
from suite.paths import ROOT
from suite.versions import PACKAGES, package_version


def git_commit(root: Path | None = None) -> dict:
    root = root or ROOT
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha or None, "dirty": dirty if sha else None}


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
        "cpu": machine.cpu_info(),
        "torch": {"version": torch.__version__, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                  "cpu_capability": machine.torch_cpu_capability()},
        "gpus": machine.gpus_from_nvml(),
        "suite": git_commit(),
    }
