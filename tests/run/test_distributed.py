"""ddp/fsdp cases: the axis, the skip reason, the launch line, outcomes, and two real ranks on a CPU."""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from suite import machine
from suite.cases import load_cases
from suite.matrix.axes import METHODS
from suite.matrix.rules import validate_combination
from suite.paths import ROOT
from suite.train.backends.registry import SUPPORT
from suite.matrix.spec import WORLD_SIZE
from suite.run import distributed, requirements
from suite.run.session import RunSession

CASES = {c.id: c for c in load_cases(ROOT / "cases")}
DDP, FSDP = CASES["tiny-llama/lora/ddp"], CASES["tiny-llama/lora/fsdp"]


def test_the_axis_marks_and_records_the_world_size():
    assert DDP.distributed == "ddp" and FSDP.distributed == "fsdp" and CASES["tiny-llama/lora/base"].distributed is None
    assert {"ddp", "gpu", "multigpu", "tiny", "lora"} <= set(DDP.markers)
    assert DDP.to_dict()["world_size"] == WORLD_SIZE == 2
    assert "world_size" not in CASES["tiny-llama/lora/base"].to_dict()  # single-process fingerprints unchanged
    assert CASES["llama2-7b/full/gradient_checkpointing+fsdp"].needs_gpu


@pytest.mark.parametrize("method, features, problem", [
    ("lora", ("ddp", "fsdp"), "at most one of ddp, fsdp"),
    ("unsloth", ("ddp",), "unsloth trains on one GPU"),
    ("qlora", ("fsdp",), "bnb_4bit_quant_storage"),
])
def test_impossible_distributed_combinations(method, features, problem):
    assert problem in validate_combination(replace(DDP, **METHODS[method].axes(), features=features), SUPPORT)


@pytest.mark.parametrize("gpus", [0, 1])
def test_too_few_gpus_skip_with_the_count(monkeypatch, tmp_path, gpus):
    monkeypatch.setattr(machine, "visible_gpu_count", lambda: gpus)
    assert requirements.missing_requirements(FSDP) == [f"at least 2 CUDA GPUs (for fsdp); {gpus} visible"]
    result = RunSession(tmp_path, "skips").run_case(DDP)
    assert result.status == "skipped" and result.reason == f"needs at least 2 CUDA GPUs (for ddp); {gpus} visible"
    big = requirements.missing_requirements(CASES["llama2-7b/lora/gradient_checkpointing+ddp"])
    assert big[0] == f"at least 2 CUDA GPUs (for ddp); {gpus} visible" and "weights of meta-llama" in big[1]


def test_two_gpus_satisfy_a_tiny_distributed_case(monkeypatch):
    monkeypatch.setattr(machine, "visible_gpu_count", lambda: 2)
    assert requirements.missing_requirements(DDP) == []


@pytest.mark.parametrize("visible, count", [(None, 4), ("0,1", 2), ("3", 1), ("", 0), ("1,-1,0", 1),
                                            ("0,1,2,3,4,5", 4)])
def test_visible_gpu_count_follows_cuda_visible_devices(monkeypatch, visible, count):
    monkeypatch.setattr(machine, "cuda_available", lambda: True)
    monkeypatch.setattr(machine, "gpus_from_nvml", lambda: [{"index": i} for i in range(4)])
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert machine.visible_gpu_count() == count
    monkeypatch.setattr(machine, "cuda_available", lambda: False)
    assert machine.visible_gpu_count() == 0


def test_launch_lines_parse_with_the_installed_accelerate(tmp_path):
    from accelerate.commands.launch import launch_command_parser

    ddp = distributed.launch_command(DDP, tmp_path, 123.5, port=29555)
    fsdp = distributed.launch_command(FSDP, tmp_path, 123.5, port=29555)
    assert ddp[1:3] == ["-m", "accelerate.commands.launch"]
    assert ddp[-5:] == ["-m", "suite.run.distributed_child", str(tmp_path / "case.pkl"), str(tmp_path), "123.5"]
    args = launch_command_parser().parse_args(ddp[3:])
    assert args.multi_gpu and not args.use_fsdp and args.num_processes == 2 and args.main_process_port == 29555
    assert args.module and args.training_script == "suite.run.distributed_child"
    args = launch_command_parser().parse_args(fsdp[3:])
    assert args.use_fsdp and not args.multi_gpu and args.num_processes == 2
    assert args.fsdp_state_dict_type == "FULL_STATE_DICT" and args.fsdp_auto_wrap_policy == "TRANSFORMER_BASED_WRAP"
    with pytest.raises(ValueError, match="not a distributed case"):
        distributed.launch_command(CASES["tiny-llama/lora/base"], tmp_path, 0.0)


def _write(path: Path, status: str, message: str = "") -> None:
    path.write_text(json.dumps({"status": status, "message": message, "payload": {"x": 1}}))


def test_outcomes_of_the_ranks(tmp_path):
    (tmp_path / "child.log").write_text("...\n  exitcode  : -9 (pid: 12)\n")
    assert distributed.read_outcome(tmp_path, 1, 1.0).status == "oom"
    (tmp_path / "child.log").write_text("boom\n")
    crash = distributed.read_outcome(tmp_path, 1, 1.0)
    assert crash.status == "crash" and "code 1" in crash.message and crash.stderr_tail == "boom\n"
    _write(tmp_path / "child-result.rank1.json", "exception", "ValueError: bad rank")
    out = distributed.read_outcome(tmp_path, 1, 1.0)
    assert out.status == "exception" and out.message == "rank 1: ValueError: bad rank"
    _write(tmp_path / "child-result.json", "ok")
    assert distributed.read_outcome(tmp_path, 0, 1.0).payload == {"x": 1}


@pytest.mark.slow
def test_a_hung_launch_is_killed_at_the_timeout(tmp_path):
    out = distributed.run(DDP, tmp_path, 1.0, command=[sys.executable, "-c", "import time; time.sleep(60)"])
    assert out.status == "timeout" and "every rank was killed" in out.message and out.wall_s < 30
    assert (tmp_path / "child.log").read_text().startswith("$ ")


@pytest.mark.slow
def test_two_ranks_train_a_case_end_to_end_on_a_cpu(monkeypatch, tmp_path):
    """The real path (session -> accelerate launch -> 2 ranks -> rank 0's result), with gloo on a CPU."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the ranks must not pick a GPU this machine may have
    monkeypatch.setattr(machine, "visible_gpu_count", lambda: 2)
    result = RunSession(tmp_path, "ddp-cpu", timeout_s=600).run_case(DDP)
    rec = result.record
    assert result.status == "passed", result.failure_messages
    assert rec.resolved["launch"]["world_size"] == 2 and "--multi_gpu" in rec.resolved["launch"]["command"]
    steps, batch = DDP.steps, DDP.training.batch_size
    assert rec.train["samples"] == steps * batch * 2  # both ranks consumed data
    assert rec.train["epochs"] == pytest.approx(steps * batch * 2 / DDP.training.num_samples, rel=0.05)
    assert rec.checkpoint["kind"] == "adapter" and rec.fingerprint == DDP.fingerprint
