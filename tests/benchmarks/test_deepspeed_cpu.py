"""DeepSpeed ZeRO-2 and ZeRO-3 on a CPU: 2 gloo ranks x micro-batch b end where 1 process x 2b does, full and LoRA
(benchmarks/fsdp2_cpu.py `--wrap zero2|zero3`: `deepspeed.initialize` around the same model and AdamW in both
launches, the suite's own loop, ZeRO-3's partitions gathered for the comparison); the engine is recorded at the
stage asked. A sampler that gives both ranks the same rows breaks the relation."""
from __future__ import annotations

import importlib.util

import pytest

from benchmarks import fsdp2_cpu

pytestmark = [
    pytest.mark.slow,  # each: a 1-rank and a 2-rank launch (113 to 202 s at load ~11 on 2 cores, 19-24 s near alone)
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                       reason="the package deepspeed (pip install -c requirements/control.txt -e '.[deepspeed]'), "
                              "not installed"),
]

# Measured 2026-12-08 on the 2-core CI machine (AMD EPYC, torch 2.13.0+cpu, deepspeed 0.19.8, transformers 5.23.0,
# peft 0.21.2; one machine, one run each of the four: provisional): largest loss difference over 6 steps 4.8e-7 nats
# (full, both stages) and 9.5e-7 (LoRA, both), largest weight difference 7.1e-6 (full, both), 3.3e-6 (LoRA, ZeRO-2)
# and 1.5e-5 (LoRA, ZeRO-3). The bounds are ten times the worst (loss rounded up); the broken sampler under ZeRO-3
# measured 3.7e-2 nats and 0.11.
LOSS_ATOL = 1e-5
WEIGHT_ATOL = 1.5e-4


# a covering design: each method and each stage once (all four were measured, above); LoRA under ZeRO-3 is the
# farthest from the single process
@pytest.mark.parametrize(("method", "stage"), [("full", 2), ("lora", 3)])
def test_two_zero_ranks_train_as_one_process_with_the_whole_batch(method, stage):
    got = fsdp2_cpu.compare(method, wrap=f"zero{stage}")
    assert got["strategy"]["kind"] == "DeepSpeedEngine" and got["strategy"]["world_size"] == 2
    assert got["strategy"]["zero_stage"] == stage
    assert got["tensors_compared"] == (28 if method == "lora" else 21)
    assert got["max_loss_diff"] <= LOSS_ATOL, got
    assert got["max_weight_diff"] <= WEIGHT_ATOL, got


def test_zero3_ranks_that_see_the_same_rows_break_the_relation():
    got = fsdp2_cpu.compare("full", fault="same_rows", wrap="zero3")
    assert got["max_loss_diff"] > LOSS_ATOL and got["max_weight_diff"] > WEIGHT_ATOL, got
