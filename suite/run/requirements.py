"""The skip policy: what this machine lacks to run a case, each said so a user knows what to install or set."""
from __future__ import annotations

import importlib.util

from suite import machine
from suite.matrix.spec import WORLD_SIZE, Case
from suite.train.backends.registry import backend_for
from suite.train.quantize import quantizer_for


def missing_requirements(case: Case) -> list[str]:
    """What this machine lacks to run the case, each said so a user knows what to install or set."""
    missing = []
    backend = backend_for(case)
    if case.uses.distributed is not None and case.uses.distributed.needs_gpus:  # fully_shard rows: CPU ranks
        gpus = machine.visible_gpu_count()
        if gpus < WORLD_SIZE:
            missing.append(f"at least {WORLD_SIZE} CUDA GPUs (for {case.distributed}); {gpus} visible")
    elif case.needs_gpu and not machine.cuda_available():
        why = [case.model.scale.gpu_for] if case.model.scale.gpu_for else []
        if case.library.needs_gpu:
            why.append(backend.name)
        why += case.uses.gpu_for  # flash-attention 2, Liger's Triton kernels
        missing.append(f"a CUDA GPU (for {', '.join(why)}); none is visible here")
    missing += backend.machine_lacks(case, machine.cuda_available())
    for module, pip_name in backend.packages:
        if importlib.util.find_spec(module) is None:
            missing.append(f"the package {pip_name} (pip install {pip_name}), not installed")
    missing += quantizer_for(case).missing(case, machine.cuda_available())
    absent = [p for p in case.uses.packages if importlib.util.find_spec(p.module) is None]
    for package in absent:  # flash-attn, liger-kernel, bitsandbytes (adamw_8bit)
        missing.append(f"the package {package.pip} (pip install {package.pip}), not installed")
    from suite.train import compat

    if not absent and not machine.cuda_available():  # e.g. the 8-bit optimizer's CPU kernels (bitsandbytes 0.50)
        missing += [m for need in case.uses.cpu_needs if (m := compat.REQUIREMENTS[need].missing())]

    missing += compat.cannot_express(case, backend.version_needs(case))
    from suite.train.family_needs import family_lacks

    missing += family_lacks(case, machine.cuda_available(), machine.cpu_info().get("flags") or [],
                            lambda module: importlib.util.find_spec(module) is not None)
    if not case.model.scale.built:
        from suite.train import models

        try:
            models.resolve(case.model.size, hub_id=case.model.hub_id, env=case.model.env, path=case.model.path,
                           config=case.model.config, materialise=False)
        except models.ModelNotAvailable as exc:
            missing.append(str(exc))
    return list(dict.fromkeys(missing))  # an 8-bit base with adamw_8bit would name bitsandbytes twice
