"""The control lock: the exact stack the references (golden curves, invariant bounds, CPU budgets)
were recorded with, `requirements/control.txt`, resolved by uv from `requirements/control.in` and
`pyproject.toml`. The README's set-up and CI install through it (`pip install -c ...`); the floors
in pyproject.toml stay for users who bring their own stack.

`refresh` resolves a new set, runs the tiny matrix and the invariants under it in a derived
environment (suite/tools/envs.py), and writes the lock only when they pass, or when the golden curves
were re-recorded on purpose (`--rerecord REASON`, which the lock's header keeps).
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from suite.errors import LockError
from suite.paths import LOCK_FILE, ROOT, display
from suite.versions import LOCK_LINE as _LINE
from suite.versions import STACK, differences_from_lock, norm_name, read_pins

__all__ = ["LockError", "LOCK_FILE", "read_pins", "differences_from_lock", "stack_pins", "refresh", "check"]
LOCK_DIR = ROOT / "requirements"
INPUT_FILE = LOCK_DIR / "control.in"
NO_DEPS_FILE = LOCK_DIR / "no-deps.txt"  # pins installed without their dependencies (Apache Otava)
# pyproject's extras the README's set-up installs through the lock (the ZeRO rows' DeepSpeed), checked as the stack is
LOCKED_EXTRAS = ("deepspeed",)
# One lock for every Python the stack supports (transformers 5 needs 3.11), with markers.
COMPILE_ARGS = ("--universal", "--python-version", "3.11")
_norm = norm_name


def stack_pins(path: Path = LOCK_FILE) -> tuple[str, ...]:
    """The top of the stack as pins for a derived environment (torch is the machine's, held apart)."""
    pins = read_pins(path)
    missing = [n for n in STACK if _norm(n) not in pins]
    if missing:
        raise LockError(f"{display(path)}: no pin for {', '.join(missing)}")
    return tuple(f"{n}=={pins[_norm(n)]}" for n in STACK if n != "torch")


def with_pins(text: str, sets: list[str]) -> str:
    """An input file's text with `name==version` lines replaced (or added) by `sets`."""
    lines = text.splitlines()
    for item in sets:
        match = _LINE.match(item.strip())
        if not match or match.group(3):
            raise LockError(f"--set {item!r}: expected name==version")
        name = _norm(match.group(1))
        new = f"{name}=={match.group(2)}"
        for i, line in enumerate(lines):
            found = _LINE.match(line.split("#", 1)[0].strip())
            if found and _norm(found.group(1)) == name:
                lines[i] = new
                break
        else:
            lines.append(new)
    return "\n".join(lines) + "\n"


def compile_lock(output: Path, upgrade: bool = False) -> None:
    """uv pip compile pyproject.toml + control.in into output."""
    cmd = [sys.executable, "-m", "uv", "pip", "compile", str(ROOT / "pyproject.toml"), str(INPUT_FILE.relative_to(ROOT)),
           *COMPILE_ARGS, "--custom-compile-command", "python -m suite lock refresh", "-q", "-o", str(output)]
    if upgrade:
        cmd.append("--upgrade")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise LockError("resolving the lock failed:\n" + (proc.stderr or proc.stdout).strip()[-3000:])


def refresh(sets: list[str], newest: bool, rerecord: str | None, log: Callable[[str], None] = print,
            select: tuple[str, ...] = ("-m", "tiny")) -> int:
    """Resolve, run the matrix and the invariants under the new set, write the lock if they pass."""
    from suite.tools import envs

    old_input, old_lock = INPUT_FILE.read_text(), LOCK_FILE.read_text() if LOCK_FILE.exists() else ""
    if newest:
        sets = [f"{n}=={envs.available_versions(n)[-1]}" for n in STACK if n != "torch"] + list(sets)
    new_input = with_pins(old_input, sets)
    torch_pin = read_pins_text(new_input).get("torch")
    installed = envs.EnvSpec(()).torch
    if torch_pin and (installed or "").split("+")[0] != torch_pin:
        raise LockError(f"the lock pins torch {torch_pin} and this interpreter has torch {installed}: torch is the "
                        f"machine's build, so install torch=={torch_pin} first and refresh from there")
    tmp = LOCK_DIR / f".control.{time.strftime('%Y%m%d-%H%M%S')}.txt"
    INPUT_FILE.write_text(new_input)
    if old_lock and not newest:  # uv prefers the pins of the file it writes: a package added moves no other pin
        tmp.write_text(old_lock)
    try:
        compile_lock(tmp)
        lock_text = tmp.read_text()
        spec = envs.EnvSpec(stack_pins(tmp), constraints=lock_text)
        log(f"resolved: {', '.join(spec.pins)}; making the environment ...")
        env_dir, info = envs.ensure_env(spec)
        made = "cached" if info["cached"] else f"made in {info['created_s']} s"
        log(f"environment {env_dir} ({made})")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        extra = ["--update-baselines"] if rerecord else []
        code_m = envs.run_pytest(env_dir, [str(ROOT / "tests" / "test_matrix.py"), *select, *extra,
                                              "--run-id", f"lock-refresh-{stamp}"], log)
        code_i = envs.run_pytest(env_dir, [str(ROOT / "tests" / "invariants")], log)
        if code_m or code_i:
            INPUT_FILE.write_text(old_input)
            log(f"not written: {'the matrix' if code_m else ''}{' and ' if code_m and code_i else ''}"
                f"{'the invariants' if code_i else ''} failed under the new set (exit {code_m}, {code_i}); "
                f"{display(LOCK_FILE)} and {display(INPUT_FILE)} are unchanged")
            return 1
        head = [f"# ftsuite control lock, refreshed {time.strftime('%Y-%m-%d')}: "
                f"the tiny matrix and the invariants passed under it"]
        if rerecord:
            head.append(f"# golden curves re-recorded on purpose: {' '.join(rerecord.split())}")
        LOCK_FILE.write_text("\n".join(head) + "\n" + lock_text)
        changed = sorted(set(_pin_lines(lock_text)) - set(_pin_lines(old_lock)))
        log(f"wrote {display(LOCK_FILE)}: {len(changed)} pins changed" + (f" ({', '.join(changed[:12])})" if changed
                                                                          else ""))
        if rerecord:
            log("golden curves rewritten under results/baselines/: review `git diff results/baselines` and commit "
                "them with the lock")
        return 0
    except BaseException:
        INPUT_FILE.write_text(old_input)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def read_pins_text(text: str) -> dict[str, str]:
    out = {}
    for raw in text.splitlines():
        match = _LINE.match(raw.split("#", 1)[0].strip())
        if match:
            out[_norm(match.group(1))] = match.group(2)
    return out


def _pin_lines(text: str) -> list[str]:
    return [raw.split(";")[0].strip() for raw in text.splitlines() if _LINE.match(raw.split("#", 1)[0].strip())]


def check(log: Callable[[str], None] = print) -> int:
    """Exit 1 when the installed stack is not the lock's."""
    from suite.versions import package_version

    off = differences_from_lock({n: package_version(n) for n in STACK})
    pins = read_pins(LOCK_FILE)
    for name in LOCKED_EXTRAS:  # absent, its rows would skip in CI and the lock check is the one to say so
        installed = package_version(name)
        if _norm(name) in pins and installed != pins[_norm(name)]:
            off.append(f"{name} {installed or '(not installed)'} (lock: {pins[_norm(name)]}; pip install -c "
                       f"{display(LOCK_FILE)} -e '.[{name}]')")
    for name, version in read_pins(NO_DEPS_FILE).items():  # installed with --no-deps: pip checked nothing
        installed = package_version(name)
        if installed != version:
            off.append(f"{name} {installed or '(not installed)'} ({display(NO_DEPS_FILE)}: {version}; "
                       f"pip install --no-deps -r {display(NO_DEPS_FILE)})")
    if off:
        log(f"the installed stack differs from {display(LOCK_FILE)}: {', '.join(off)}")
        return 1
    log(f"the installed stack is the control stack of {display(LOCK_FILE)}")
    return 0
