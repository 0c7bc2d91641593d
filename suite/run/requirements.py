"""The skip policy: what this machine lacks to run a case, each said so a user knows what to install or set."""
from __future__ import annotations

import importlib.util

from suite import machine
from suite.matrix.spec import WORLD_SIZE, Case
from suite.train.backends.registry import backend_for
from suite.train.quantize import quantizer_for
from suite.versions import package_version


def missing_requirements(case: Case) -> list[str]:
    """What this machine lacks to run the case, each said so a user knows what to install or set."""
    missing = []
    backend = backend_for(case)
    if case.distributed:
        gpus = machine.visible_gpu_count()
        if gpus < WORLD_SIZE:
            missing.append(f"at least {WORLD_SIZE} CUDA GPUs (for {case.distributed}); {gpus} visible")
    elif case.needs_gpu and not machine.cuda_available():
        why = []
        if case.model.size == "7b":
            why.append("a 7B model")
        if case.library.needs_gpu:
            why.append(backend.name)
        if "flash_attn" in case.features:
            why.append("flash-attention 2")
        if "liger" in case.features:
            why.append("Liger's Triton kernels")
        missing.append(f"a CUDA GPU (for {', '.join(why)}); none is visible here")
    missing += backend.machine_lacks(case, machine.cuda_available())
    for module, pip_name in backend.packages:
        if importlib.util.find_spec(module) is None:
            missing.append(f"the package {pip_name} (pip install {pip_name}), not installed")
    if "flash_attn" in case.features and importlib.util.find_spec("flash_attn") is None:
        missing.append("the package flash-attn (pip install flash-attn), not installed")
    if "liger" in case.features and importlib.util.find_spec("liger_kernel") is None:
        missing.append("the package liger-kernel (pip install liger-kernel), not installed")
    missing += quantizer_for(case).missing(case, machine.cuda_available())
    from suite.train import compat

    if "adamw_8bit" in case.features and package_version("bitsandbytes") is None:
        missing.append("the package bitsandbytes (pip install bitsandbytes), not installed")
    elif "adamw_8bit" in case.features and not machine.cuda_available():
        missing += [m for m in [compat.REQUIREMENTS["optimizer_8bit_cpu"].missing()] if m]

    missing += compat.cannot_express(case, backend.version_needs(case))
    if case.model.size != "tiny":
        from suite.train import models

        try:
            models.resolve(case.model.size, hub_id=case.model.hub_id, env=case.model.env, path=case.model.path,
                           config=case.model.config, materialise=False)
        except models.ModelNotAvailable as exc:
            missing.append(str(exc))
    return list(dict.fromkeys(missing))  # an 8-bit base with adamw_8bit would name bitsandbytes twice
