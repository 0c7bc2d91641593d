"""Cases with ddp or fsdp: launched as WORLD_SIZE processes by `accelerate launch`.

The parent pickles the case to a file and launches `python -m suite.run.distributed_child` on every
rank; each rank runs the same suite.train.run as a single-process case (the Trainer takes the
process group from the launcher's environment), and rank 0 writes the result file that
runner.run_in_child would have written, so the session judges both paths alike. Every process of a
launch carries its tag (`LAUNCH_ENV`): a timeout kills them all, the ranks too, which torchrun starts in sessions of
their own. fully_shard cases launch as ddp does, on gloo CPU
ranks (no GPU visible to them), and their child shards the model itself (suite/train/wrapped.py `shard`)."""
from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Sequence

from suite.matrix.spec import WORLD_SIZE, Case
from suite.paths import ROOT
from suite.run.runner import OFFLINE_ENV, Outcome, signal_name, tail_of

RESULT = "child-result.json"
LOG = "child.log"
CASE_FILE = "case.pkl"
LAUNCH_ENV = "FTSUITE_LAUNCH"  # every process of one launch carries its tag: they are killed together

# Explicit flags for everything that matters, so a user's accelerate default config changes nothing.
COMMON_ARGS = {"num_machines": "1", "mixed_precision": "no", "dynamo_backend": "no"}  # bf16 comes from SFTConfig
FSDP_ARGS = {
    "fsdp_version": "1",
    "fsdp_sharding_strategy": "FULL_SHARD",
    "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # one unit per decoder layer (_no_split_modules)
    "fsdp_state_dict_type": "FULL_STATE_DICT",  # save_model then writes one ordinary checkpoint
    "fsdp_use_orig_params": "true",  # frozen base weights and trainable adapters share wrapped modules
    "fsdp_sync_module_states": "true",
    "fsdp_cpu_ram_efficient_loading": "false",  # every rank loads the model itself, onto its LOCAL_RANK GPU
    "fsdp_offload_params": "false",
}
# FSDP v2 through accelerate (the fsdp2 rows, on GPUs): fully_shard per decoder layer; v1's sharding strategy,
# original parameters and module-state sync are obsolete there (reshard_after_forward is its FULL_SHARD)
FSDP2_ARGS = {
    "fsdp_version": "2",
    "fsdp_reshard_after_forward": "true",
    "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    "fsdp_state_dict_type": "FULL_STATE_DICT",
    "fsdp_cpu_ram_efficient_loading": "false",
    "fsdp_offload_params": "false",
}


def result_path(workdir: Path, rank: int) -> Path:
    """Rank 0 writes the case's result; other ranks write theirs aside (read only when they fail)."""
    return workdir / (RESULT if rank == 0 else f"child-result.rank{rank}.json")


def free_port() -> int:
    """A free TCP port for the process group's rendezvous (parallel runs must not share one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(case: Case, workdir: Path, started: float, *, num_processes: int = WORLD_SIZE,
                   port: int | None = None, python: str = sys.executable) -> list[str]:
    """The `accelerate launch` command line that runs the case on num_processes ranks."""
    feature = case.uses.distributed
    if feature is None:
        raise ValueError(f"{case.id} is not a distributed case (no ddp or fsdp feature)")
    cmd = [python, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
           "--main_process_port", str(port if port is not None else free_port())]
    for key, value in COMMON_ARGS.items():
        cmd += [f"--{key}", value]
    cmd.append(feature.launch)
    if feature.shards and not feature.suite_shards:  # fully_shard: the child shards, accelerate launches DDP-style
        for key, value in (FSDP2_ARGS if feature.fsdp_version == 2 else FSDP_ARGS).items():
            cmd += [f"--{key}", value]
    return cmd + ["-m", "suite.run.distributed_child", str(workdir / CASE_FILE), str(workdir), repr(started)]


def child_env(case: Case) -> dict[str, str]:
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in OFFLINE_ENV.items()}}
    feature = case.uses.distributed
    if feature is not None and feature.suite_shards:  # CPU rows: gloo ranks, whatever GPUs this machine has
        env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(case: Case, workdir: Path, timeout_s: float, command: Sequence[str] | None = None) -> Outcome:
    """Launch the case's ranks and turn whatever happens into an Outcome; never raises for their sake.

    `command` replaces the accelerate launch line (tests use it to run the child without GPUs).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in [workdir / LOG, *workdir.glob("child-result*.json")]:
        stale.unlink(missing_ok=True)
    with open(workdir / CASE_FILE, "wb") as fh:
        pickle.dump(case, fh)
    started = time.time()
    cmd = list(command) if command is not None else launch_command(case, workdir, started)
    log_path = workdir / LOG
    tag = uuid.uuid4().hex
    with open(log_path, "ab") as log:
        log.write(f"$ {shlex.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env={**child_env(case), LAUNCH_ENV: tag}, start_new_session=True)
    try:
        code = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(proc, tag)
        return Outcome("timeout", message=f"no result after {timeout_s:.0f} s: every rank was killed",
                       stderr_tail=tail_of(log_path), exitcode=proc.returncode, wall_s=time.time() - started)
    kill_group(proc, tag)  # ranks a crashed launcher left behind
    outcome = read_outcome(workdir, code, time.time() - started)
    if outcome.ok:
        outcome.payload.setdefault("resolved", {})["launch"] = {
            "launcher": "accelerate" if command is None else "custom", "command": shlex.join(cmd),
            "world_size": WORLD_SIZE, "strategy": case.distributed}
    return outcome


def kill_group(proc: subprocess.Popen, tag: str | None = None) -> None:
    """SIGKILL the launcher's process group and every process that carries the launch's tag (its ranks, in sessions
    of their own, and whatever they started), then reap the launcher."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in launched(tag) if tag else ():
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass


def _text(out, start: int) -> str:
    out.seek(start)
    return out.read().decode(errors="replace")


def launched(tag: str) -> dict[int, int | None]:
    """The live processes whose environment carries LAUNCH_ENV=tag, each with its RANK (None for the launcher):
    read from /proc (Linux; elsewhere none are found and only the launcher's group is killed)."""
    found: dict[int, int | None] = {}
    marker = f"{LAUNCH_ENV}={tag}".encode()
    proc_dir = Path("/proc")
    for entry in proc_dir.iterdir() if proc_dir.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or another user's
            continue
        if marker in environ:
            rank = next((v for v in environ if v.startswith(b"RANK=")), None)
            found[int(entry.name)] = int(rank[5:]) if rank and rank[5:].isdigit() else None
    return found


def run_two_ranks(module: str, args: list[str], timeout_s: float, what: str = "the two ranks") -> str:
    """`python -m module --rank *args` on WORLD_SIZE gloo CPU ranks by torchrun, on a free port (each rank started
    through suite/run/ranks.py, which lets a deadline ask it where it waits). Their output, or RuntimeError saying
    how they ended (the launches of distributed_adapter.py, distributed_resume.py and benchmarks/fsdp2_cpu.py)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD_SIZE), "--master_port",
           str(free_port()), "-m", "suite.run.ranks", module, "--rank", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return run_ranks(cmd, env, timeout_s, what)


def run_ranks(cmd: list[str], env: dict[str, str], timeout_s: float, what: str) -> str:
    """Run a launcher of ranks (torchrun's command line) to its end or the deadline. Every process it starts carries
    a tag of this launch in its environment, and all of them are killed when it ends: torchrun starts each rank in
    a session of its own (torch/distributed/elastic/multiprocessing/subprocess_handler: `start_new_session`), so the
    launcher's process group holds none of them. At the deadline each rank still running is asked for its Python
    stacks (suite/run/ranks.py's signal) before the kill, and the error names it and where its main thread was."""
    tag = uuid.uuid4().hex
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**env, LAUNCH_ENV: tag}, cwd=ROOT,
                                start_new_session=True)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            waiting = _ask_running_ranks(tag, out)
            kill_group(proc, tag)
            raise RuntimeError(f"{what} gave no end after {timeout_s:.0f} s: {waiting}; every process of the launch "
                               f"was killed. The end of their output:\n{_text(out, 0)[-4000:]}") from None
        kill_group(proc, tag)
        log = _text(out, 0)
    if proc.returncode:
        raise RuntimeError(f"{what} exited {proc.returncode}:\n{log[-3000:]}")
    return log


def _ask_running_ranks(tag: str, out) -> str:
    """Which ranks of the launch are still running, and where: each is sent ranks.DUMP_SIGNAL in turn (its stacks
    go to the shared output; what appears after the signal is its own), the innermost frame of the last thread
    listed (faulthandler lists the main thread last) taken as where it waits."""
    from suite.run.ranks import DUMP_SIGNAL

    running = {pid: rank for pid, rank in launched(tag).items() if rank is not None}
    told = []
    for pid, rank in sorted(running.items(), key=lambda item: item[1]):
        start = out.seek(0, os.SEEK_END)
        try:
            os.kill(pid, DUMP_SIGNAL)
        except ProcessLookupError:
            continue
        time.sleep(1.0)  # the C handler writes at once; a second covers a loaded machine
        frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', re.split(r"[Tt]hread 0x", _text(out, start))[-1])
        where = f", its main thread in {frames[0][0]}:{frames[0][1]} ({frames[0][2]})" if frames else ""
        told.append(f"rank {rank} (pid {pid}) was still running{where}")
    ended = sorted(set(range(WORLD_SIZE)) - set(running.values()))
    if ended:
        told.append(f"rank{'s' if len(ended) > 1 else ''} {', '.join(map(str, ended))} had ended")
    return "; ".join(told) if running else "no rank was running (the launcher itself had not ended)"


def read_outcome(workdir: Path, exitcode: int | None, wall_s: float) -> Outcome:
    """Rank 0's result; else the first failed rank's; else what the launcher's exit says."""
    tail = tail_of(workdir / LOG)
    ranks = sorted(workdir.glob("child-result.rank*.json"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    for path in [workdir / RESULT, *ranks]:
        if not path.is_file():
            continue
        try:
            res = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            return Outcome("crash", message=f"unreadable result file {path.name}: {exc}", stderr_tail=tail,
                           exitcode=exitcode, wall_s=wall_s)
        if res["status"] == "ok" and path.name == RESULT:
            return Outcome("ok", payload=res["payload"], stderr_tail=tail, exitcode=exitcode, wall_s=wall_s)
        if res["status"] != "ok":
            rank = "rank 0" if path.name == RESULT else f"rank {re.sub(r'[^0-9]', '', path.name)}"
            return Outcome(res["status"], message=f"{rank}: {res.get('message', '')}", stderr_tail=tail,
                           exitcode=exitcode, wall_s=wall_s)
    if exitcode is not None and exitcode < 0:
        name = signal_name(-exitcode)
        return Outcome("crash", message=f"the launcher died of signal {name}", stderr_tail=tail,
                       exitcode=exitcode, wall_s=wall_s)
    # torchrun's summary names a rank killed by SIGKILL (the out-of-memory killer, most likely) as exitcode -9
    if re.search(r"exitcode\s*:\s*-9\b", tail):
        return Outcome("oom", message="a rank died of SIGKILL with no result (most likely the out-of-memory killer)",
                       stderr_tail=tail, exitcode=exitcode, wall_s=wall_s)
    return Outcome("crash", message=f"the launcher exited with code {exitcode} and no rank wrote a result",
                   stderr_tail=tail, exitcode=exitcode, wall_s=wall_s)
