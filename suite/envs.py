"""Isolated environments for one version set of the stack, cached by their requirements.

An environment is a virtual environment that sees this interpreter's site-packages (torch and
every other heavy package is reused, never downloaded twice) with the requested pins installed
on top, torch held at the installed version by a constraint. uv makes it when present, else
venv + pip. It is keyed by the pins, the Python and the torch version, and reused while its
`ready.json` exists.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from suite.env import package_version
from suite.errors import SuiteError

_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?\s*(==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+$")


class EnvError(SuiteError):
    """An environment could not be made: a pin that cannot be resolved or installed."""


def parse_pins(text: str, where: str = "--baseline") -> tuple[str, ...]:
    """'trl==1.15.0 peft==0.21.0' (spaces or commas) -> normalised, sorted pins; bad ones named."""
    pins = []
    for raw in re.split(r"[\s,]+", text.strip()):
        if not raw:
            continue
        if raw.startswith(("git+", "http://", "https://")) or "@" in raw:
            pins.append(raw)  # a direct reference (a branch of trl, say): passed to pip as it is
            continue
        if not _PIN.match(raw):
            raise EnvError(f"{where}: {raw!r} is not a requirement like 'trl==1.15.0'")
        pins.append(re.sub(r"\s+", "", raw).lower())
    if not pins:
        raise EnvError(f"{where}: no requirement given")
    return tuple(sorted(pins))


@dataclass(frozen=True)
class EnvSpec:
    pins: tuple[str, ...]
    python: str = sys.version.split()[0]
    torch: str | None = package_version("torch")

    @property
    def key(self) -> str:
        doc = json.dumps({"pins": self.pins, "python": self.python, "torch": self.torch}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]


def envs_root() -> Path:
    from suite.models import cache_root

    return cache_root() / "envs"


def python_of(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _run(cmd: list[str], what: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise EnvError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return proc


def _create(env_dir: Path, spec: EnvSpec) -> str:
    constraints = env_dir.parent / f"{env_dir.name}.constraints.txt"
    constraints.write_text(f"torch=={spec.torch}\n" if spec.torch else "")
    uv = shutil.which("uv")
    if uv:
        _run([uv, "venv", "--system-site-packages", "--python", sys.executable, str(env_dir)], "uv venv")
        _run([uv, "pip", "install", "--python", str(python_of(env_dir)), "-c", str(constraints), *spec.pins],
             f"installing {' '.join(spec.pins)} with uv")
        return "uv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)], "python -m venv")
    _run([str(python_of(env_dir)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          "-c", str(constraints), *spec.pins], f"installing {' '.join(spec.pins)} with pip")
    return "venv+pip"


def resolved_versions(env_dir: Path, names=("torch", "transformers", "trl", "peft", "accelerate", "datasets",
                                            "bitsandbytes")) -> dict[str, str | None]:
    code = ("import importlib.metadata as m, json\n"
            "def v(n):\n try: return m.version(n)\n except m.PackageNotFoundError: return None\n"
            f"print(json.dumps({{n: v(n) for n in {list(names)!r}}}))")
    return json.loads(_run([str(python_of(env_dir)), "-c", code], "reading versions").stdout)


def ensure_env(spec: EnvSpec, root: Path | None = None) -> tuple[Path, dict]:
    """The environment for spec, made if needed; returns its folder and its ready.json."""
    root = root or envs_root()
    env_dir = root / spec.key
    ready = env_dir / "ready.json"
    if ready.is_file():
        info = json.loads(ready.read_text())
        return env_dir, {**info, "cached": True}
    if env_dir.exists():  # a half-made environment from an interrupted call
        shutil.rmtree(env_dir)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        tool = _create(env_dir, spec)
    except EnvError:
        shutil.rmtree(env_dir, ignore_errors=True)
        raise
    info = {"pins": list(spec.pins), "python": spec.python, "torch": spec.torch, "tool": tool,
            "created_s": round(time.time() - t0, 1), "versions": resolved_versions(env_dir)}
    tmp = ready.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, ready)
    return env_dir, {**info, "cached": False}
