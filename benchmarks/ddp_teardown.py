"""DDP's gloo teardown, many times in one process: does freeing a DDP model after `destroy_process_group` hang?

Each teardown: a process group of one (gloo, a fresh TCP port), a small DDP model, one backward, an all-reduce, a
barrier, then either the old order of benchmarks/fsdp2_cpu.py (`late`: the group destroyed, then the model freed, so
its Reducer drops the group's last reference with the GIL held) or the order suite/run/ranks.py
`end_process_group` enforces (`early`: the model freed first). A watchdog (faulthandler) prints every thread's
stack and exits 1 when one teardown takes over WATCHDOG_S: that is the hang (the last JSON line on stderr names
the teardown). No launch, so hundreds of teardowns take a minute, where the 2-rank launch hung once in about 30.
Measured 2026-12-07 (torch 2.13.0+cpu, the 2-core machine under load; docs/gpu.md): `late` hung in 6 runs of 6,
at teardowns 4, 4, 20, 90, 141 and 287 (546 teardowns, 6 hangs, each in `del model`); `early` ran 1500 (runs of
500 and 1000) without one.

    python benchmarks/ddp_teardown.py late 300    # exits 1 at the teardown that hung, or 0
    python benchmarks/ddp_teardown.py early 500
"""
from __future__ import annotations

import faulthandler
import json
import socket
import sys
import time

WATCHDOG_S = 20  # one teardown takes milliseconds; twenty seconds is a hang on any machine


def teardown(order: str) -> None:
    import torch
    import torch.distributed as dist

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(64, 64),
                                                                          torch.nn.Linear(64, 64)))
    loss = model(torch.ones(4, 64)).sum()
    loss.backward()
    mean = loss.detach().clone()
    dist.all_reduce(mean)
    dist.barrier()
    if order == "late":
        dist.destroy_process_group()
        del model  # the Reducer's reference is the group's last: ~ProcessGroupGloo joins with the GIL held
    else:
        del model
        dist.destroy_process_group()


def main(order: str, count: int) -> None:
    if order not in ("late", "early"):
        raise SystemExit(f"order must be late or early, not {order!r}")
    started = time.time()
    for i in range(count):
        print(json.dumps({"order": order, "teardown": i}), file=sys.stderr, flush=True)  # the last one is where
        faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
        teardown(order)
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps({"order": order, "teardowns": count, "hung": False, "s": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
