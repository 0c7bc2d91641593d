"""FSDP2 trains on a CPU: 2 gloo ranks x micro-batch b end where 1 process x 2b does, full and LoRA
(benchmarks/fsdp2_cpu.py: per-layer `fully_shard`, the suite's own loop, the full state dict gathered), and so
does DDP; what wrapped the model is recorded as FSDP2's or DDP's (suite/train/wrapped.py). A sampler that gives
both ranks the same rows breaks the relation."""
from __future__ import annotations

import pytest

from benchmarks import fsdp2_cpu

pytestmark = pytest.mark.slow  # each relation launches one process and two ranks (19 to 25 s on 2 cores, 2026-12-07;
# DDP's: 53 and 62 s under heavy load, 24 CPU-s each)

# Measured 2026-12-07 on the 2-core CI machine (AMD EPYC, torch 2.13.0+cpu, transformers 5.23.0, peft 0.21.2;
# one machine, one run each: provisional): largest loss difference over 6 steps 4.8e-7 nats (full) and 9.5e-7
# (LoRA), largest weight difference 7.0e-6 (full) and 3.3e-6 (LoRA's A and B). The bounds are ten times the
# worst; the broken sampler measured 3.8e-2 nats and 0.11.
LOSS_ATOL = 1e-5
WEIGHT_ATOL = 1e-4


@pytest.mark.parametrize("method", ["full", "lora"])
def test_two_fsdp2_ranks_train_as_one_process_with_the_whole_batch(method):
    got = fsdp2_cpu.compare(method)
    assert got["strategy"]["kind"] == "FSDPModule" and got["strategy"]["world_size"] == 2
    assert got["strategy"]["sharded_modules"] == 3  # two decoder layers and the root
    assert got["tensors_compared"] == (28 if method == "lora" else 21)
    assert got["max_loss_diff"] <= LOSS_ATOL, got
    assert got["max_weight_diff"] <= WEIGHT_ATOL, got


# DDP's launch used to hang at its end (3 in ~10 launches, then 1 in 30, 2026-12-07, and once in CI): a DDP model alive as the group
# was destroyed deadlocked gloo's teardown (suite/run/ranks.py says how, measured with gdb). The ranks now end the
# group only once the model is gone (`end_process_group`, which refuses a live one), and the launcher's deadline
# names a rank that never ends (tests/run/test_ranks.py).
@pytest.mark.parametrize("method", ["full", "lora"])
def test_two_ddp_ranks_train_as_one_process_with_the_whole_batch(method):
    got = fsdp2_cpu.compare(method, wrap="ddp")
    assert got["strategy"]["kind"] == "DistributedDataParallel" and got["strategy"]["world_size"] == 2
    assert got["max_loss_diff"] <= LOSS_ATOL, got
    assert got["max_weight_diff"] <= WEIGHT_ATOL, got


def test_ranks_that_see_the_same_rows_break_the_relation():
    got = fsdp2_cpu.compare("full", fault="same_rows")
    assert got["max_loss_diff"] > LOSS_ATOL and got["max_weight_diff"] > WEIGHT_ATOL, got
