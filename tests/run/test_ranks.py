"""How gloo ranks end (suite/run/ranks.py) and what the launcher's deadline does (suite/run/distributed.py
`run_ranks`): a DDP model alive at the group's end is refused before it can deadlock the teardown; a rank that never
ends is named with where its main thread waits, and every process of the launch is killed, the ranks that torchrun
starts in sessions of their own too."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.paths import ROOT
from suite.run import distributed
from suite.run.ranks import NO_DDP_AT_END

pytestmark = pytest.mark.slow  # child interpreters; the deadline test waits out its deadline

# A stand-in for torchrun: WORLD_SIZE ranks through suite/run/ranks.py, each in a session of its own as torchrun
# starts them (torch/distributed/elastic/multiprocessing/subprocess_handler), waited for.
LAUNCHER = """
import os, subprocess, sys
kind, pidfile = sys.argv[1:]
procs = [subprocess.Popen([sys.executable, "-m", "suite.run.ranks", "tests.run.rank_targets", "--rank", kind, pidfile],
                          env={**os.environ, "RANK": str(r)}, start_new_session=True) for r in range(2)]
print("ranks started", flush=True)
sys.exit(max(p.wait() for p in procs))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def _gone(pid: int) -> bool:
    """Dead, or a zombie nobody has reaped yet (a container's first process may not reap orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_the_deadline_names_the_rank_still_running_and_where_and_kills_every_process(tmp_path):
    pidfile = tmp_path / "rank1.pid"
    started = time.time()
    with pytest.raises(RuntimeError) as err:
        distributed.run_ranks([sys.executable, "-c", LAUNCHER, "hang", str(pidfile)], _env(), 8, "the stand-in ranks")
    message = str(err.value)
    pid = int(pidfile.read_text())
    assert message.startswith(f"the stand-in ranks gave no end after 8 s: rank 1 (pid {pid}) was still running, "
                              f"its main thread in {ROOT / 'tests/run/rank_targets.py'}:"), message
    assert "(wait_forever); rank 0 had ended; every process of the launch was killed" in message, message
    assert "ranks started" in message  # the output's end comes with it
    assert time.time() - started < 40
    deadline = time.time() + 10
    while not _gone(pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _gone(pid), f"rank 1 (pid {pid}) outlived its launch"


def test_ranks_that_end_give_their_output_and_a_failed_launch_its_exit(tmp_path):
    log = distributed.run_ranks([sys.executable, "-c", LAUNCHER, "end", str(tmp_path / "none")], _env(), 60, "two")
    assert "ranks started" in log
    with pytest.raises(RuntimeError, match=r"^two exited 3:\n"):
        distributed.run_ranks([sys.executable, "-c", "raise SystemExit(3)"], _env(), 60, "two")


def test_a_ddp_model_alive_at_the_groups_end_is_refused_and_the_group_ends_once_it_is_gone():
    done = subprocess.run([sys.executable, "-m", "tests.run.rank_targets", "ddp_alive"], capture_output=True,
                          text=True, cwd=ROOT, env={**_env(), "CUDA_VISIBLE_DEVICES": ""}, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"refused: {NO_DDP_AT_END}; 1 alive" in done.stdout, done.stdout
    assert done.stdout.rstrip().endswith("ended: initialized=False"), done.stdout


def test_a_cases_launch_that_times_out_takes_the_ranks_in_sessions_of_their_own_with_it(tmp_path):
    """suite/run/distributed.py `run` (accelerate's launch, torchrun underneath): the kill at its timeout."""
    from tests.run.test_distributed import DDP

    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],"
            " start_new_session=True); open(sys.argv[1], 'w').write(str(p.pid)); time.sleep(300)")
    out = distributed.run(DDP, tmp_path, 3.0, command=[sys.executable, "-c", code, str(tmp_path / "pid")])
    assert out.status == "timeout" and "every rank was killed" in out.message
    pid = int((tmp_path / "pid").read_text())
    deadline = time.time() + 10
    while not _gone(pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _gone(pid), f"the rank (pid {pid}) outlived its launch"
