"""The strategy that ran is the one asked (suite/judge/strategy.py): a ddp/fsdp case fails when its model
trained under another wrapper or world size than its feature asks; the slow test launches a real FSDP case
through accelerate on a CPU, where accelerate trains it with DDP, and the check says so."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from suite import machine
from suite.cases import load_cases
from suite.judge import strategy
from suite.paths import ROOT
from suite.run import distributed
from suite.run.session import RunSession
from suite.train.payload import Payload, Strategy
from suite.train.wrapped import describe

CASES = {c.id: c for c in load_cases(ROOT / "cases")}
DDP, FSDP, PLAIN = CASES["tiny-llama/lora/ddp"], CASES["tiny-llama/lora/fsdp"], CASES["tiny-llama/lora/base"]


def ran(wrapper: str, kind: str | None, world: int = 2, sharded: int = 0, dtype: str | None = "MULTI_CPU"):
    return SimpleNamespace(strategy=Strategy(wrapper, kind, sharded, world, dtype))


def test_the_asked_wrapper_on_two_ranks_passes():
    res = strategy.check(DDP, ran("DistributedDataParallel", "DistributedDataParallel"))
    assert res.passed and "asked ddp, ran DistributedDataParallel on 2 ranks" in res.message
    res = strategy.check(FSDP, ran("FullyShardedDataParallel", "FullyShardedDataParallel", sharded=3, dtype="FSDP"))
    assert res.passed and "3 sharded modules" in res.message


def test_a_silent_fallback_to_ddp_fails_naming_both():
    res = strategy.check(FSDP, ran("DistributedDataParallel", "DistributedDataParallel"))
    assert not res.passed
    assert "asked fsdp, ran DistributedDataParallel on 2 ranks" in res.message
    assert "expected FullyShardedDataParallel on 2 ranks: a silent fallback" in res.message


@pytest.mark.parametrize("wrapper, kind, world", [
    ("DistributedDataParallel", "DistributedDataParallel", 1),  # one rank: nothing was data-parallel
    ("LlamaForCausalLM", None, 1),  # no wrapper at all
    ("DeepSpeedEngine", "DeepSpeedEngine", 2),
])
def test_another_wrapper_or_world_size_fails(wrapper, kind, world):
    res = strategy.check(DDP, ran(wrapper, kind, world))
    assert not res.passed and f"ran {wrapper}" in res.message and res.value == world


def test_a_child_that_recorded_nothing_fails_and_a_plain_case_is_refused():
    res = strategy.check(DDP, SimpleNamespace(strategy=None))
    assert not res.passed and "recorded nothing of what wrapped the model" in res.message
    with pytest.raises(ValueError, match="not a distributed case"):
        strategy.check(PLAIN, ran("LlamaForCausalLM", None, 1))


def test_the_payload_carries_the_strategy_through_json():
    doc = {"wrapper": "FSDPLlamaForCausalLM", "kind": "FSDPModule", "sharded_modules": 5, "world_size": 2,
           "distributed_type": None}
    assert Strategy(**doc).to_dict() == {k: v for k, v in doc.items() if v is not None}
    assert Payload.__dataclass_fields__["strategy"].default is None


@pytest.mark.slow  # imports torch.distributed.fsdp: 5.7 s cold on the 2-core machine
def test_a_module_without_a_wrapper_is_described_as_one_process():
    import torch

    got = describe(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    assert (got.wrapper, got.kind, got.sharded_modules, got.world_size) == ("Sequential", None, 0, 1)


@pytest.mark.slow
def test_fsdp_asked_through_accelerate_on_a_cpu_trains_with_ddp_and_fails_the_strategy_check(monkeypatch, tmp_path):
    """The measured fallback: accelerate launch --use_fsdp without CUDA trains with DDP (accelerate 1.15
    selects FSDP only for GPU-type distributed states). The FSDP case's 2-GPU skip is bypassed, and its
    launch line asks no `fsdp_sync_module_states`: with it, accelerate's FSDP plugin raises on a CPU
    ("no available devices found"), a loud failure; without it, the silent one this check is for."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the ranks must not pick a GPU this machine may have
    monkeypatch.setattr(machine, "visible_gpu_count", lambda: 2)
    monkeypatch.setitem(distributed.FSDP_ARGS, "fsdp_sync_module_states", "false")
    result = RunSession(tmp_path, "fsdp-cpu", timeout_s=900).run_case(FSDP)
    rec = result.record
    assert rec.failure is None, rec.failure
    [check] = [c for c in rec.checks if c["name"] == "strategy"]
    assert not check["passed"] and "asked fsdp, ran DistributedDataParallel on 2 ranks" in check["message"]
    assert rec.resolved["strategy"]["kind"] == "DistributedDataParallel"
    assert rec.resolved["strategy"]["distributed_type"] == "MULTI_CPU" and result.status == "failed"
    assert "--use_fsdp" in rec.resolved["launch"]["command"]
    assert [c["name"] for c in rec.checks if not c["passed"]] == ["strategy"]  # everything else trained fine
