"""Functions the runner tests run in forked children (importable by name, as the forkserver needs)."""
from __future__ import annotations

import os
import signal
import sys
import time


def ok(value, process_start):
    return {"value": value, "pid": os.getpid(), "start_delay_s": time.time() - process_start}


def raises(process_start):
    print("about to fail", file=sys.stderr, flush=True)
    raise RuntimeError("boom from the child")


def crashes(process_start):
    print("about to abort", file=sys.stderr, flush=True)
    os.abort()


def exits(process_start):
    print("exiting early", flush=True)
    os._exit(3)


def sleeps(seconds, process_start):
    print("sleeping", flush=True)
    time.sleep(seconds)
    return {}


def runs_out_of_memory(process_start):
    raise MemoryError("could not allocate 1 TiB")


def killed(process_start):
    print("pretending to be the OOM killer's victim", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def allocates(mib, process_start):
    block = bytearray(mib * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])
    import psutil

    return {"rss": psutil.Process().memory_info().rss}


def imported(names, process_start):
    """Which of these modules the child started with (a spawned child starts with none of the stack)."""
    return {"loaded": sorted(n for n in names if n in sys.modules)}
