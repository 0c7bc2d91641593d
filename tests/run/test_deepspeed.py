"""DeepSpeed rows (cases/deepspeed.yaml): ZeRO-2 and ZeRO-3 on 2 gloo CPU ranks through trl's SFTTrainer given a
ZeRO config. They need no GPU, skip naming the package where DeepSpeed is absent, launch as the ddp rows do, give
the trainer the stage asked, and the strategy check holds the engine's own stage to it: a ZeRO-3 row that ran
stage 2, or a DeepSpeed row that trained under DDP (accelerate without DeepSpeed's config), fails naming both."""
from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from suite import machine
from suite.cases import load_cases
from suite.judge import strategy
from suite.paths import ROOT
from suite.run import distributed, requirements
from suite.train import args as train_args
from suite.train.payload import Strategy
from suite.train.wrapped import describe

CASES = {c.id: c for c in load_cases(ROOT / "cases")}
ROWS = {(m, s): CASES[f"tiny-llama/{m}/zero{s}"] for m in ("full", "lora") for s in (2, 3)}


def ran(kind: str | None, stage: int | None, world: int = 2, wrapper: str = "DeepSpeedEngine"):
    return SimpleNamespace(strategy=Strategy(wrapper, kind, 0, world, "DEEPSPEED", stage))


@pytest.mark.parametrize("gpus", [0, 2])
def test_zero_rows_run_on_cpu_ranks_whatever_gpus_the_machine_has(monkeypatch, tmp_path, gpus):
    monkeypatch.setattr(machine, "visible_gpu_count", lambda: gpus)
    for case in ROWS.values():
        assert not case.needs_gpu and not {"gpu", "multigpu"} & set(case.markers)
        assert case.uses.distributed.wrapper == "DeepSpeedEngine" and case.to_dict()["world_size"] == 2
        cmd = distributed.launch_command(case, tmp_path, 1.0, port=29555)
        assert "--multi_gpu" in cmd and not any(a.startswith(("--fsdp", "--use_deepspeed")) for a in cmd)
        assert distributed.child_env(case)["CUDA_VISIBLE_DEVICES"] == ""


def test_a_zero_row_skips_naming_deepspeed_where_it_is_not_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    for case in ROWS.values():
        assert "the package deepspeed (pip install deepspeed), not installed" in requirements.missing_requirements(case)
    assert requirements.missing_requirements(CASES["tiny-llama/lora/fully_shard"]) == []


@pytest.mark.parametrize("stage", [2, 3])
def test_the_zero_config_asks_the_stage_and_keeps_the_cases_batch_and_optimizer(stage):
    ds = train_args.deepspeed_config(stage)
    assert ds["zero_optimization"]["stage"] == stage and "optimizer" not in ds and "scheduler" not in ds
    assert ds["train_micro_batch_size_per_gpu"] == ds["gradient_accumulation_steps"] == "auto"
    # ZeRO-3's save_model writes the gathered parameters only with this flag (else a DeepSpeed checkpoint alone)
    assert ds["zero_optimization"].get("stage3_gather_16bit_weights_on_model_save", False) is (stage == 3)
    # and ZeRO-3 partitions every parameter of a tiny model (none whole on every rank below a threshold)
    assert ds["zero_optimization"].get("stage3_param_persistence_threshold") == (0 if stage == 3 else None)


@pytest.mark.slow  # the trainer's arguments import transformers (seconds cold)
def test_the_trainer_is_given_the_zero_config_of_its_feature_only(tmp_path):
    for (_, stage), case in ROWS.items():
        assert train_args.common(case, tmp_path, "cpu", "fp32")["deepspeed"] == train_args.deepspeed_config(stage)
    assert "deepspeed" not in train_args.common(CASES["tiny-llama/lora/fully_shard"], tmp_path, "cpu", "fp32")


def test_the_stage_that_ran_must_be_the_stage_asked():
    for (_, stage), case in ROWS.items():
        res = strategy.check(case, ran("DeepSpeedEngine", stage))
        assert res.passed and f"ran DeepSpeedEngine on 2 ranks, accelerate's distributed type DEEPSPEED, ZeRO stage " \
                              f"{stage}" in res.message, res.message
    res = strategy.check(ROWS[("lora", 3)], ran("DeepSpeedEngine", 2))
    assert not res.passed and "asked zero3" in res.message and "a silent fallback" in res.message
    assert "ZeRO stage 2 (expected DeepSpeedEngine at ZeRO stage 3" in res.message
    assert not strategy.check(ROWS[("full", 2)], ran("DeepSpeedEngine", 3)).passed
    assert not strategy.check(ROWS[("full", 2)], ran("DeepSpeedEngine", 2, world=1)).passed
    ddp = strategy.check(ROWS[("full", 3)], ran("DistributedDataParallel", None, wrapper="DistributedDataParallel"))
    assert not ddp.passed and "ran DistributedDataParallel" in ddp.message
    # a DDP record cannot pass a DeepSpeed row, nor a DeepSpeed record a ddp row
    assert not strategy.check(CASES["tiny-llama/lora/ddp"], ran("DeepSpeedEngine", 2)).passed


@pytest.mark.slow  # describe imports torch's FSDP (seconds cold)
def test_the_stage_recorded_is_the_engines_own():
    """describe reads zero_optimization_stage() from whatever DeepSpeedEngine (found by class name) trained."""

    class DeepSpeedEngine:  # DeepSpeed's engine is an nn.Module; describe asks only its class name and stage
        def modules(self):
            return [self]

        def zero_optimization_stage(self):
            return 2

    got = describe(DeepSpeedEngine())
    assert got.kind == "DeepSpeedEngine" and got.zero_stage == 2
    assert describe(SimpleNamespace(modules=lambda: [])).zero_stage is None


def test_a_zero_row_skips_naming_the_compiler_deepspeeds_cpu_op_is_built_with(monkeypatch, tmp_path):
    monkeypatch.setattr(machine, "cuda_available", lambda: False)
    real = importlib.util.find_spec  # DeepSpeed installed or not (the compiler is asked only where it is)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "deepspeed" else real(name, *a))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    missing = requirements.missing_requirements(ROWS[("full", 2)])
    assert any(m.startswith("a C++ compiler (") and "no-such-compiler" in m and "DeepSpeed's shared-memory op" in m
               for m in missing), missing
    assert requirements.missing_requirements(CASES["tiny-llama/lora/fully_shard"]) == []
    monkeypatch.delenv("CXX")
    monkeypatch.setenv("PATH", str(tmp_path))  # no c++ on PATH either
    assert any("c++ on PATH" in m for m in requirements.missing_requirements(ROWS[("lora", 3)]))


@pytest.mark.slow  # one launch of 2 gloo ranks with DeepSpeed
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="needs the package deepspeed (the deepspeed extra: README's set-up)")
def test_the_adapter_saved_under_zero3_equals_the_unsharded_one_and_a_save_without_the_gather_does_not():
    """ZeRO-3 partitions the adapter across the ranks; saved as the Trainer's save_model does under ZeRO-3 (the
    engine gathers, peft writes on rank 0) it is the unsharded adapter, keys, shapes and values; rank 0 saving its
    own parameters without the gather (ZeRO-3's empty placeholders) is not."""
    from suite.run import distributed_adapter

    diffs = distributed_adapter.compare("deepspeed")
    good = diffs[""]
    assert good.equal and good.keys == 28, good  # 14 LoRA-adapted linears x (A, B), values bit for bit
    partitioned = diffs["partitioned"]
    assert not partitioned.equal and len(partitioned.shapes) == 28, partitioned  # each rank's placeholder: [0]
