"""One rank of a ddp/fsdp case: `python -m suite.run.distributed_child CASE_PICKLE WORKDIR STARTED`.

Started by `accelerate launch` (suite/run/distributed.py), which sets RANK, LOCAL_RANK, WORLD_SIZE.
Every rank trains (the Trainer joins the process group); rank 0's result is the case's.
"""
from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

from suite.run import runner
from suite.run.distributed import LOG, result_path


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    case_file, workdir, started = Path(argv[0]), Path(argv[1]), float(argv[2])
    with open(case_file, "rb") as fh:
        case = pickle.load(fh)
    rank = int(os.environ.get("RANK", "0"))
    out = result_path(workdir, rank)
    runner.child_main(runner.train_case, (case, workdir), str(out), str(workdir / LOG), started)
    # a failed rank exits non-zero so that the launcher stops the others instead of leaving them
    # blocked in a collective until the case's timeout
    return 0 if json.loads(out.read_text())["status"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
