"""Whatever happens in a child becomes an outcome with the evidence; the parent never dies of it."""
from __future__ import annotations

import pytest

from suite.run import runner
from tests import child_targets as t


def test_ok_payload_comes_back_from_a_different_process(tmp_path):
    import os

    out = runner.run_in_child(t.ok, (42,), tmp_path, timeout_s=120)
    assert out.ok and out.payload["value"] == 42 and out.payload["pid"] != os.getpid()


def test_exception_is_recorded_with_its_message_and_output(tmp_path):
    out = runner.run_in_child(t.raises, (), tmp_path, timeout_s=120)
    assert out.status == "exception"
    assert out.message == "RuntimeError: boom from the child"
    assert "about to fail" in out.stderr_tail and "Traceback" in out.stderr_tail


def test_crash_by_signal(tmp_path):
    out = runner.run_in_child(t.crashes, (), tmp_path, timeout_s=120)
    assert out.status == "crash" and "SIGABRT" in out.message and out.exitcode < 0
    assert "about to abort" in out.stderr_tail


def test_exit_without_result(tmp_path):
    out = runner.run_in_child(t.exits, (), tmp_path, timeout_s=120)
    assert out.status == "crash" and "exited with code 3 without writing a result" in out.message
    assert "exiting early" in out.stderr_tail


@pytest.mark.slow
def test_timeout_kills_the_child(tmp_path):
    out = runner.run_in_child(t.sleeps, (60,), tmp_path, timeout_s=2)
    assert out.status == "timeout" and "no result after 2 s" in out.message
    assert out.wall_s < 30 and "sleeping" in out.stderr_tail


def test_out_of_memory_both_ways(tmp_path):
    out = runner.run_in_child(t.runs_out_of_memory, (), tmp_path / "a", timeout_s=120)
    assert out.status == "oom" and "MemoryError" in out.message
    out = runner.run_in_child(t.killed, (), tmp_path / "b", timeout_s=120)
    assert out.status == "oom" and "SIGKILL" in out.message and "out-of-memory killer" in out.message


def test_a_failed_child_does_not_poison_the_next(tmp_path):
    runner.run_in_child(t.crashes, (), tmp_path / "a", timeout_s=120)
    assert runner.run_in_child(t.ok, (1,), tmp_path / "b", timeout_s=120).ok


def test_memory_is_the_childs_own(tmp_path):
    """A child that allocates 200 MiB shows it; the next child, forked fresh, does not carry it."""
    big = runner.run_in_child(t.allocates, (200,), tmp_path / "a", timeout_s=120).payload["rss"]
    small = runner.run_in_child(t.allocates, (1,), tmp_path / "b", timeout_s=120).payload["rss"]
    assert big - small > 150 * 2**20


def test_unsloth_and_gpu_cases_start_in_a_fresh_interpreter_without_the_stack(tmp_path):
    """unsloth must be imported before transformers/trl/peft, which the forkserver preloads; on a GPU
    the preload's imports initialise CUDA, which a forked child cannot use."""
    from suite.cases import load_cases
    from tests.helpers import write_cases

    d = write_cases(tmp_path, "matrix:\n  - {models: [tiny-llama], methods: [unsloth, qlora]}\n")
    cases = load_cases(d)
    assert {c.method: runner.entry_point(c, cuda=False) for c in cases} == {
        "unsloth": (runner.train_spawned, "spawn"), "qlora": (runner.train_case, "forkserver")}
    # on a GPU every case is spawned: the preloaded stack would have initialised CUDA before forking
    assert {runner.entry_point(c, cuda=True) for c in cases} == {(runner.train_spawned, "spawn")}
    stack = ("transformers", "trl", "peft", "torch")
    fresh = runner.run_in_child(t.imported, (stack,), tmp_path / "spawn", timeout_s=120, method="spawn")
    preloaded = runner.run_in_child(t.imported, (stack,), tmp_path / "fork", timeout_s=300)
    assert fresh.ok and fresh.payload["loaded"] == [], fresh.stderr_tail
    assert preloaded.ok and preloaded.payload["loaded"] == sorted(stack)
    assert runner.OFFLINE_ENV["UNSLOTH_DISABLE_STATISTICS"] == "1"
