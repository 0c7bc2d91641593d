"""FSDP2 rows: fully_shard (the suite's own FSDP2 on 2 gloo CPU ranks, cases/fsdp2.yaml) runs without GPUs,
fsdp2 (accelerate's FSDP v2) needs two and launches a v2 plugin; the strategy check asks FSDPModule of both;
the adapter saved from a sharded model equals the one saved unsharded (suite/run/distributed_adapter.py),
and the ways to get it wrong are caught; a sharded checkpoint resumes as the uninterrupted run; the
Trainer's own checkpoint of such a row is a known upstream break (a strict xfail)."""
from __future__ import annotations

from pathlib import Path

import pytest

from suite import machine
from suite.cases import load_cases
from suite.judge import strategy
from suite.paths import ROOT
from suite.run import (distributed, distributed_adapter, distributed_resume, distributed_trainer_resume,
                       requirements)
from tests.judge.test_strategy import ran

CASES = {c.id: c for c in load_cases(ROOT / "cases")}
OWN = {m: CASES[f"tiny-llama/{m}/fully_shard"] for m in ("full", "lora")}
ACCEL = CASES["tiny-llama/lora/fsdp2"]
RESUME_ATOL = 2e-6  # see the resume test: measured 0 (one machine, one run), a few ulps of a loss near 4.8


@pytest.mark.parametrize("gpus", [0, 1])
def test_fully_shard_rows_run_on_a_cpu_and_fsdp2_rows_skip_naming_the_gpus(monkeypatch, gpus):
    monkeypatch.setattr(machine, "visible_gpu_count", lambda: gpus)
    for case in OWN.values():
        assert not case.needs_gpu and not {"gpu", "multigpu"} & set(case.markers)
        assert case.distributed == "fully_shard" and case.to_dict()["world_size"] == 2
        assert requirements.missing_requirements(case) == []
    assert requirements.missing_requirements(ACCEL) == [f"at least 2 CUDA GPUs (for fsdp2); {gpus} visible"]
    assert {"gpu", "multigpu"} <= set(ACCEL.markers)
    assert requirements.missing_requirements(CASES["llama2-7b/lora/gradient_checkpointing+fsdp2"])[0] == (
        f"at least 2 CUDA GPUs (for fsdp2); {gpus} visible")


def test_both_fsdp2_values_ask_fsdp2s_module_and_fully_shard_launches_cpu_ranks(tmp_path):
    assert OWN["lora"].uses.distributed.wrapper == ACCEL.uses.distributed.wrapper == "FSDPModule"
    assert CASES["tiny-llama/lora/fsdp"].uses.distributed.wrapper == "FullyShardedDataParallel"
    own = distributed.launch_command(OWN["lora"], tmp_path, 1.0, port=29555)
    assert "--multi_gpu" in own and not any(a.startswith("--fsdp") for a in own)  # the child shards, not accelerate
    assert distributed.child_env(OWN["lora"])["CUDA_VISIBLE_DEVICES"] == ""  # gloo ranks whatever the machine
    accel = distributed.launch_command(ACCEL, tmp_path, 1.0, port=29555)
    assert accel[accel.index("--fsdp_version") + 1] == "2" and "--fsdp_sharding_strategy" not in accel


def test_the_strategy_check_fails_a_fully_shard_row_that_trained_under_ddp():
    """What accelerate does to a model that is not marked prepared on MULTI_CPU ranks: DDP around it."""
    res = strategy.check(OWN["lora"], ran("DistributedDataParallel", "DistributedDataParallel"))
    assert not res.passed and "asked fully_shard, ran DistributedDataParallel" in res.message
    assert "expected FSDPModule on 2 ranks: a silent fallback" in res.message
    res = strategy.check(OWN["lora"], ran("FSDPPeftModelForCausalLM", "FSDPModule", sharded=3))
    assert res.passed and "3 sharded modules" in res.message
    assert not strategy.check(ACCEL, ran("FullyShardedDataParallel", "FullyShardedDataParallel", dtype="FSDP")).passed


def _adapter(folder: Path, tensors: dict) -> Path:
    from safetensors.torch import save_file

    folder.mkdir()
    save_file(tensors, str(folder / distributed_adapter.ADAPTER_FILE))
    return folder


@pytest.mark.slow  # imports safetensors' torch side and writes files
def test_the_adapter_comparison_names_keys_shapes_and_values(tmp_path):
    import torch

    a = {"x.lora_A.weight": torch.ones(8, 4), "x.lora_B.weight": torch.zeros(4, 8)}
    base = _adapter(tmp_path / "a", a)
    assert distributed_adapter.compare_dirs(base, _adapter(tmp_path / "same", dict(a))).equal
    moved = distributed_adapter.compare_dirs(base, _adapter(tmp_path / "v", {**a, "x.lora_B.weight": torch.full((4, 8), 1e-6)}))
    assert not moved.equal and moved.max_abs_diff == pytest.approx(1e-6)
    half = distributed_adapter.compare_dirs(base, _adapter(tmp_path / "h", {**a, "x.lora_A.weight": torch.ones(4, 4)}))
    assert half.shapes == ["x.lora_A.weight: [8, 4] vs [4, 4]"] and not half.equal
    renamed = distributed_adapter.compare_dirs(base, _adapter(tmp_path / "k", {"p." + k: v for k, v in a.items()}))
    assert renamed.only_unsharded == sorted(a) and renamed.only_sharded == sorted("p." + k for k in a)
    (tmp_path / "empty").mkdir()
    assert "no adapter_model.safetensors" in distributed_adapter.compare_dirs(base, tmp_path / "empty").error


@pytest.mark.slow  # imports torch.distributed.fsdp through accelerate's plugin (seconds cold)
def test_the_fsdp2_launch_line_makes_accelerates_fsdp_v2_plugin(tmp_path, monkeypatch):
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(distributed.launch_command(ACCEL, tmp_path, 1.0, port=29555)[3:])
    assert args.use_fsdp and args.fsdp_version == "2" and args.num_processes == 2
    for key, value in prepare_multi_gpu_env(args).items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)


@pytest.mark.slow  # one launch of 2 gloo ranks: 43 s under load on the 2-core machine (2026-12-07)
def test_the_adapter_saved_from_two_fsdp2_ranks_equals_the_unsharded_one_and_the_wrong_saves_do_not():
    diffs = distributed_adapter.compare()
    good = diffs[""]
    assert good.equal and good.keys == 28, good  # 14 LoRA-adapted linears x (A, B), values bit for bit
    local = diffs["local_shard"]  # rank 0's own shard: every tensor's first dimension halved
    assert not local.equal and len(local.shapes) == 28 and not local.only_sharded
    prefixed = diffs["prefixed"]  # peft drops keys it cannot place: the adapter file holds none of them
    assert not prefixed.equal and len(prefixed.only_unsharded) == 28
    # transformers' Trainer.save_model on such a model (no FSDP plugin on CPU ranks): rank 0 alone saves the
    # model's state dict of DTensors, which raised here (torch 2.13: "Attempted to access the data pointer on
    # an invalid python storage"); whatever it does, it is not the unsharded adapter
    assert not diffs["trainer_save"].equal


# Two launches of 2 ranks (each trains both methods): 83 s under heavy load (load average 10 on the 2 cores,
# 2026-12-07), 36 s of CPU in all, four fifths of it the ranks' imports (torch, transformers, peft: 7.2 CPU-s per
# rank, 4 ranks) and torchrun's (2 s per launch); training and the checkpoint about 3 s. Alone on 2 cores an
# estimated 20-25 s (the CPU over 2 cores, plus torchrun's start twice): in CI, no longer opt-in. Fewer steps or a
# smaller model would save little; fewer processes would drop the point (a resume in new processes).
@pytest.mark.slow
def test_a_sharded_checkpoint_resumes_in_new_processes_as_the_uninterrupted_run():
    """Measured 2026-12-07 (2-core AMD EPYC, torch 2.13.0+cpu, transformers 5.23.0, peft 0.21.2; one machine,
    one run): the 3 resumed steps' losses and the final weights equal the uninterrupted run's bit for bit, full and
    LoRA; the optimizer's state not read back moved them by 1.7e-2 / 3.6e-3 nats and 4.6e-2 / 4.5e-2. The bound
    is a few float32 ulps of a loss near 4.8 (ulp 4.8e-7): the two runs use the same kernels in the same order,
    so anything larger is a change of what is resumed."""
    for got in distributed_resume.compare():
        assert got.resumed_steps == distributed_resume.STEPS - distributed_resume.STOP
        assert got.max_loss_diff <= RESUME_ATOL and got.max_weight_diff <= RESUME_ATOL, got
        assert got.fault_max_loss_diff > RESUME_ATOL and got.fault_max_weight_diff > RESUME_ATOL, got


class SaveModelRaisesOnDTensors(RuntimeError):
    """The known break: Trainer.save_model on FSDP2 CPU ranks raised on the adapter's DTensors (docs/gpu.md)."""


# Known broken upstream, measured 2026-12-07 (torch 2.13.0+cpu, transformers 5.23.0, accelerate 1.15.0, peft 0.21.2):
# accelerate has no FSDP plugin on MULTI_CPU ranks, so Trainer.save_model takes its plain branch
# (transformers/trainer.py:4125 `self._save`, :4160 `self.model.save_pretrained(...)`) with the model's own state
# dict of DTensors; peft's PeftModel.save_pretrained (peft/peft_model.py:323) asks each tensor's storage pointer for
# its alias check (peft/utils/other.py:1448 `id_tensor_storage` -> safetensors/torch.py:18
# `untyped_storage().data_ptr()`), which a DTensor has not: "Attempted to access the data pointer on an invalid python
# storage", at the first checkpoint. Strict: it turns into a failure (XPASS) the day the Trainer's checkpoint and
# resume work there; any other error fails as is.
# One launch of 2 ranks that dies at the first save: 40 s under load (2026-12-07), an estimated 12-15 s alone.
@pytest.mark.slow
@pytest.mark.xfail(raises=SaveModelRaisesOnDTensors, strict=True,
                   reason="Trainer.save_model on FSDP2 CPU ranks: peft's save_pretrained asks a DTensor for its "
                          "storage pointer (peft/peft_model.py:323); no FSDP plugin on MULTI_CPU ranks")
def test_the_trainers_own_checkpoint_of_a_fully_shard_row_resumes_as_the_uninterrupted_run():
    try:
        got = distributed_trainer_resume.compare()
    except RuntimeError as exc:
        if distributed_trainer_resume.SAVE_ERROR in str(exc) and "peft_model.py" in str(exc):
            raise SaveModelRaisesOnDTensors(str(exc)[-2000:]) from exc
        raise
    assert got["keys"] == 28, got  # 14 LoRA-adapted linears x (A, B)
    # the bound the sharded resume above measured for the same model and kernels (the Trainer's path is unmeasured
    # until its save works: measure it then)
    assert got["max_weight_diff"] <= RESUME_ATOL, got
