"""One case, one child process; whatever happens to the child becomes a recorded outcome.

Children are forked from a forkserver that has already imported torch, transformers, trl and
peft (never CUDA), so each case pays for its own work and not for imports; peak memory is
measured in the child, so it is the case's own.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from suite.matrix.spec import Case
from suite.train.backends.registry import backend_for

PRELOAD = ["suite.run.preload"]
STDERR_TAIL_CHARS = 4000
# The stack must not reach the network: every model and data set is local.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_TELEMETRY": "1",
               "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "DISABLE_TQDM": "1",
               "UNSLOTH_DISABLE_STATISTICS": "1"}


@dataclass
class Outcome:
    """What came back from a child: ok with a payload, or a failure kind with the evidence."""

    status: str  # "ok" | "exception" | "crash" | "timeout" | "oom"
    payload: dict = field(default_factory=dict)
    message: str = ""
    stderr_tail: str = ""
    exitcode: int | None = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


_CTX: mp.context.BaseContext | None = None


def context() -> mp.context.BaseContext:
    """The forkserver context, its server preloaded with the training stack (started once)."""
    global _CTX
    if _CTX is None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _CTX = ctx
    return _CTX


_WARM = False


def ensure_started() -> None:
    """Start the forkserver (and its preload) now, so that the first case's fixed cost is its own."""
    global _WARM
    if not _WARM:
        run_in_child(_noop, (), Path(os.environ.get("TMPDIR", "/tmp")) / f"ftsuite-warm-{os.getpid()}", 600)
        _WARM = True


def _noop(process_start: float) -> dict:
    return {}


def child_main(target: Callable[..., dict], args: tuple, result_path: str, log_path: str, started: float,
               env: dict[str, str] | None = None) -> None:
    """Body of the child: send output to the log, run, write the result file."""
    if env:  # a forked child has the forkserver's environment, not the parent's of now
        os.environ.update(env)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        payload = target(*args, process_start=started)
        out = {"status": "ok", "payload": payload}
    except BaseException as exc:  # noqa: BLE001 - everything becomes an outcome
        text = "".join(traceback.format_exception(exc))
        print(text, flush=True)
        status = "oom" if _is_oom(exc) else "exception"
        out = {"status": status, "message": f"{type(exc).__name__}: {exc}"[:2000], "traceback": text[-8000:]}
    tmp = result_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(out, fh, default=str)
    os.replace(tmp, result_path)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def signal_name(number: int) -> str:
    """SIGKILL for 9; the number itself when it names no signal."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def tail_of(path: Path, chars: int = STDERR_TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_in_child(target: Callable[..., dict], args: tuple, workdir: Path, timeout_s: float,
                 method: str = "forkserver", env: dict[str, str] | None = None) -> Outcome:
    """Run target(*args, process_start=...) in a child; never raises for the child's sake.

    method "forkserver" (default) forks from the preloaded server; "spawn" starts a fresh
    interpreter that imports everything itself (what isolation cost before the forkserver).
    env: variables set in the child before the target runs.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    result_path, log_path = workdir / "child-result.json", workdir / "child.log"
    for p in (result_path, log_path):
        p.unlink(missing_ok=True)
    os.environ.update({k: os.environ.get(k, v) for k, v in OFFLINE_ENV.items()})  # children inherit it
    ctx = context() if method == "forkserver" else mp.get_context(method)
    started = time.time()
    proc = ctx.Process(target=child_main, args=(target, args, str(result_path), str(log_path), started, env),
                       daemon=False)
    proc.start()
    proc.join(timeout_s)
    wall = time.time() - started
    if proc.is_alive():
        proc.kill()
        proc.join(30)
        return Outcome("timeout", message=f"no result after {timeout_s:.0f} s: the child was killed",
                       stderr_tail=tail_of(log_path), exitcode=proc.exitcode, wall_s=wall)
    tail = tail_of(log_path)
    if result_path.is_file():
        try:
            res: dict[str, Any] = json.loads(result_path.read_text())
        except json.JSONDecodeError as exc:
            return Outcome("crash", message=f"unreadable result file: {exc}", stderr_tail=tail,
                           exitcode=proc.exitcode, wall_s=wall)
        if res["status"] == "ok":
            return Outcome("ok", payload=res["payload"], stderr_tail=tail, exitcode=proc.exitcode, wall_s=wall)
        return Outcome(res["status"], message=res.get("message", ""), stderr_tail=tail,
                       exitcode=proc.exitcode, wall_s=wall)
    code = proc.exitcode
    if code is not None and code < 0:
        name = signal_name(-code)
        kind = "oom" if code == -signal.SIGKILL else "crash"
        hint = " (SIGKILL with no result: most likely the out-of-memory killer)" if kind == "oom" else ""
        return Outcome(kind, message=f"child died of signal {name}{hint}", stderr_tail=tail, exitcode=code,
                       wall_s=wall)
    return Outcome("crash", message=f"child exited with code {code} without writing a result",
                   stderr_tail=tail, exitcode=code, wall_s=wall)


def train_case(case: Case, workdir: Path, process_start: float) -> dict:
    """Child entry point for a matrix case (imported lazily so the parent stays light); the payload
    crosses to the parent as JSON (suite/train/payload.py)."""
    train_run = _training()
    return train_run.run(case, workdir, process_start).to_dict()


def train_spawned(case: Case, workdir: Path, process_start: float) -> dict:
    """Child entry point for a case started with "spawn", in a fresh interpreter.

    On a CUDA machine every case starts so: importing the stack initialises CUDA (peft and
    transformers import bitsandbytes, which asks the GPU for its compute capability), and a child
    forked from a server that did so cannot use CUDA ("Cannot re-initialize CUDA in forked
    subprocess"). unsloth cases start so everywhere: unsloth patches transformers, trl and peft
    when imported and must come first. The interpreter's start and the imports are `import_s`,
    left out of `setup_s`, so that set-up compares with the cases forked from the preloaded server.
    """
    backend_for(case).prepare_child()  # e.g. unsloth, which must be imported before the stack
    import suite.run.preload  # noqa: F401  (the stack, as the forkserver has it)

    train_run = _training()
    imported = time.time()
    out = train_run.run(case, workdir, imported)
    out.timing.import_s = imported - process_start
    return out.to_dict()


def _training():
    """The child's training module, with the known faults FTSUITE_INJECT names installed first (for tests
    and benchmarks/sensitivity.py; unset, nothing is): the one place they enter (suite/train/inject.py)."""
    from suite.train import inject
    from suite.train import run as train_run

    inject.install_hooks()
    return train_run


def entry_point(case: Case, cuda: bool | None = None) -> tuple[Callable[..., dict], str]:
    """The child's target and start method for a case (see train_spawned for why)."""
    if cuda is None:
        from suite.machine import cuda_available

        cuda = cuda_available()
    method = backend_for(case).start_method(cuda)
    return (train_spawned if method == "spawn" else train_case), method
