"""The rank side of `run_two_ranks` (suite/run/distributed.py): how a gloo CPU rank starts and how it ends.

Start: `python -m suite.run.ranks MODULE ARGS...` runs MODULE as `__main__` with ARGS after registering
faulthandler on SIGUSR1 (every thread's Python stack to stderr, written by a C handler, so it works while another
thread holds the GIL): the launcher's deadline sends it to a rank that never ended and says where it waited.

End: `end_process_group()`. Measured 2026-12-07 (torch 2.13.0+cpu, gdb on a hung rank of benchmarks/fsdp2_cpu.py
--wrap ddp, 1 hang in the first 4 launches): a DDP model still alive when `destroy_process_group` runs holds, through
its C++ Reducer, the last reference to gloo's ProcessGroup. When the model is then freed, the Reducer's destructor
(pybind11 `shared_ptr` holder: the GIL stays held) destroys the ProcessGroupGloo, whose destructor joins gloo's
worker threads; a worker still finishing its last work (the barrier's, which holds the all-reduce before it)
frees that work's tensors, which needs the GIL: a deadlock, the rank never exits and its peer's launcher waits.
Torch releases the GIL when *Python* drops a ProcessGroup (init.cpp's `IntrusivePtrNoGilDestructor`), not when
the Reducer does (pytorch/pytorch#56297: blocking destructors under pybind11 can deadlock). FSDP2 keeps no
Reducer, which is why only DDP's launch hung. So the group must outlive every DDP model: train in a function
that returns (the model dies with its frame while the group still holds the ProcessGroup), then end here, which
refuses to go on while a DistributedDataParallel is alive."""
from __future__ import annotations

import faulthandler
import runpy
import signal
import sys

DUMP_SIGNAL = signal.SIGUSR1
NO_DDP_AT_END = ("a DistributedDataParallel model is still alive as its process group ends: its Reducer would "
                 "destroy gloo's ProcessGroup with the GIL held and can deadlock (suite/run/ranks.py)")


def live_ddp_models() -> int:
    """How many DistributedDataParallel modules are still alive (after a collection: cycles do not count)."""
    import gc

    from torch.nn.parallel import DistributedDataParallel

    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, DistributedDataParallel))


def end_process_group() -> None:
    """Every rank's last call: no DDP model left alive (else RuntimeError, before any wait), a barrier (rank 0's
    files are written before either rank tears down), then the group destroyed."""
    import torch.distributed as dist

    alive = live_ddp_models()
    if alive:
        raise RuntimeError(f"{NO_DDP_AT_END}; {alive} alive: let the model go out of scope (return from the "
                           "function that trained it) before ending the group")
    dist.barrier()
    dist.destroy_process_group()


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m suite.run.ranks MODULE [ARGS...]")
    faulthandler.register(DUMP_SIGNAL, all_threads=True)
    sys.argv = [sys.argv[0], *argv[1:]]  # the module sees its own arguments, as under `python -m MODULE`
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
