"""The strategy that ran is the one asked: a ddp/fsdp case passes only when the model that trained was
wrapped in its feature's wrapper (matrix/axes.py `Feature.wrapper`) on WORLD_SIZE ranks, as its child
recorded them (suite/train/wrapped.py), a DeepSpeed engine at the ZeRO stage asked (read from the engine).
A launcher that falls back silently (accelerate asked for FSDP on a machine without CUDA trains with DDP)
fails the case naming both."""
from __future__ import annotations

from suite.checkresult import CheckResult
from suite.matrix.spec import WORLD_SIZE, Case
from suite.train.payload import Payload

NAME = "strategy"


def check(case: Case, payload: Payload) -> CheckResult:
    """Whether the recorded wrapper and world size are the ones the case's data-parallel feature asks."""
    feature = case.uses.distributed
    if feature is None:
        raise ValueError(f"{case.id} is not a distributed case: the strategy check does not apply")
    asked = f"asked {feature.name}"
    stage = "" if feature.zero_stage is None else f" at ZeRO stage {feature.zero_stage}"
    expected = f"expected {feature.wrapper}{stage} on {WORLD_SIZE} ranks"
    ran = payload.strategy
    if ran is None:
        return CheckResult(NAME, False, f"{case.id}: {asked}, but the child recorded nothing of what wrapped the "
                                        f"model ({expected}; a child from before the strategy check?)")
    what = ran.wrapper if ran.kind in (None, ran.wrapper) else f"{ran.wrapper} ({ran.kind})"
    ok = ran.kind == feature.wrapper and ran.world_size == WORLD_SIZE and ran.zero_stage == feature.zero_stage
    how = f"{ran.world_size} rank{'s' if ran.world_size != 1 else ''}"
    if ran.distributed_type:
        how += f", accelerate's distributed type {ran.distributed_type}"
    if ran.zero_stage is not None:
        how += f", ZeRO stage {ran.zero_stage}"
    if ran.sharded_modules:
        how += f", {ran.sharded_modules} sharded modules"
    verdict = f"{expected}" if ok else f"{expected}: a silent fallback, the case did not test what it asks"
    return CheckResult(NAME, ok, f"{case.id}: {asked}, ran {what} on {how} ({verdict})",
                       value=float(ran.world_size), bound=float(WORLD_SIZE))
