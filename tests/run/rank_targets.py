"""What the rank tests run as ranks (`python -m suite.run.ranks tests.run.rank_targets --rank KIND PIDFILE`, started
by a stand-in for torchrun: each rank in a session of its own), and the DDP teardown guard in a process group of
one (`python -m tests.run.rank_targets ddp_alive`)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def wait_forever() -> None:
    while True:
        time.sleep(1)


def rank(kind: str, pidfile: str) -> None:
    """hang: rank 0 ends at once, rank 1 records its pid and never ends (as a rank stuck in a teardown)."""
    if kind == "hang" and os.environ["RANK"] == "1":
        Path(pidfile).write_text(str(os.getpid()))
        wait_forever()


def ddp_alive() -> None:
    """A DDP model still alive at end_process_group is refused; once it is gone, the group ends."""
    import socket

    import torch
    import torch.distributed as dist

    from suite.run.ranks import end_process_group

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
    try:
        end_process_group()
    except RuntimeError as exc:
        print(f"refused: {exc}", flush=True)
    del model
    end_process_group()
    print(f"ended: initialized={dist.is_initialized()}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--rank":
        rank(*sys.argv[2:])
    elif sys.argv[1] == "ddp_alive":
        ddp_alive()
