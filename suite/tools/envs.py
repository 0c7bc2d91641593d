"""Isolated environments for one version set of the stack, cached by their requirements.

An environment is a virtual environment that sees the stack of the interpreter that made it,
wherever that stack lives (a venv, a conda env, a uv project environment, the base interpreter):
a `.pth` file in the new environment adds that interpreter's site directories after its own, so
torch and every other heavy package is reused, never downloaded twice, and the requested pins,
installed by pip into the new environment, come first. (`--system-site-packages` is not enough:
made from a venv, its "system" is the base interpreter the venv came from, not the venv.) Torch
is held at the installed version by a constraint. An environment is keyed by the pins, the
constraints, the Python, torch and the interpreter that made it, reused while its `ready.json`
exists, and checked before every use: it must import the same torch, and every package of the
stack from the parent or from itself (suite/records/provenance.py's PACKAGES), or it is refused, naming what
it is missing.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import site
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from suite.errors import SuiteError
from suite.paths import ROOT
from suite.versions import PACKAGES, STACK, package_version

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


def parent_site_dirs() -> tuple[str, ...]:
    """The site directories this interpreter imports installed packages from, in its own order."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return tuple(dict.fromkeys(os.path.realpath(d) for d in dirs if os.path.isdir(d)))


@dataclass(frozen=True)
class EnvSpec:
    pins: tuple[str, ...]
    python: str = sys.version.split()[0]
    torch: str | None = package_version("torch")
    base: tuple[str, ...] = field(default_factory=parent_site_dirs)  # the stack it is layered over
    constraints: str = ""  # a constraints file's text (a lock), on top of torch's pin
    pip_args: tuple[str, ...] = ()  # e.g. --no-index --find-links DIR

    @property
    def key(self) -> str:
        doc = json.dumps({"pins": self.pins, "python": self.python, "torch": self.torch, "base": self.base,
                          "constraints": self.constraints, "pip_args": self.pip_args}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]


def envs_root() -> Path:
    from suite.train.models import cache_root

    return cache_root() / "envs"


def python_of(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _run(cmd: list[str], what: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise EnvError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return proc


PTH_NAME = "_ftsuite_parent_stack.pth"


def site_packages_of(env_dir: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_run([str(python_of(env_dir)), "-c", code], "reading the environment's site-packages").stdout.strip())


def _create(env_dir: Path, spec: EnvSpec) -> str:
    constraints = env_dir.parent / f"{env_dir.name}.constraints.txt"
    constraints.write_text((f"torch=={spec.torch}\n" if spec.torch else "") + spec.constraints)
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], "python -m venv")
    # One import line: site.addsitedir also runs the .pth files of those folders (editable installs,
    # a parent that is itself layered), and appends, so the environment's own packages come first.
    line = "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in spec.base) + "\n"
    (site_packages_of(env_dir) / PTH_NAME).write_text(line)
    python = str(python_of(env_dir))
    if subprocess.run([python, "-c", "import pip"], capture_output=True).returncode != 0:
        _run([python, "-m", "ensurepip", "--default-pip"], "ensurepip (the parent has no pip)")
    # pip, not uv: pip sees the parent's packages through the .pth and leaves them be; uv only
    # knows an environment's own site-packages and would install the whole stack again.
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *spec.pip_args,
          "-c", str(constraints), *spec.pins], f"installing {' '.join(spec.pins)} with pip")
    return "venv+pip over the parent's site-packages"


_INSPECT = """
import importlib.metadata as m, importlib.util, json, os, sys
out = {}
for name in NAMES:
    try:
        d = m.distribution(name)
        out[name] = {"version": d.version, "location": os.path.realpath(str(d.locate_file("")))}
    except m.PackageNotFoundError:
        out[name] = None
spec = importlib.util.find_spec("torch")
out["torch.__file__"] = os.path.realpath(spec.origin) if spec and spec.origin else None
try:
    import torch  # noqa: F401  (it must load, not only be found)
    out["torch.import"] = "ok"
except Exception as exc:
    out["torch.import"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def inspect_stack(python: str | Path) -> dict:
    """What an interpreter imports of the stack: version and folder of each package, and torch."""
    code = _INSPECT.replace("NAMES", repr(list(PACKAGES)))
    return json.loads(_run([str(python), "-c", code], f"inspecting the stack of {python}").stdout.strip().splitlines()[-1])


def stack_problems(parent: dict, derived: dict, own: str) -> list[str]:
    """What the derived environment fails to import of the parent's stack (empty: nothing).

    Torch must be the parent's own. Every other package the parent has must be there, from the
    parent's folder or from the environment's own site-packages (a pin, or a dependency a pin
    upgraded), never from a third place such as the base interpreter under the parent's venv."""
    problems = []
    if derived.get("torch.import") != "ok" and parent.get("torch.import") == "ok":
        problems.append(f"torch does not import ({derived.get('torch.import')})")
    elif parent.get("torch.__file__") != derived.get("torch.__file__"):
        problems.append(f"torch is {derived.get('torch.__file__')}, not the parent's {parent.get('torch.__file__')}")
    for name in PACKAGES:
        mine, theirs = derived.get(name), parent.get(name)
        if theirs is None:
            continue
        if mine is None:
            problems.append(f"{name} {theirs['version']} (installed in {theirs['location']}) is missing")
        elif mine["location"] not in (theirs["location"], own):
            problems.append(f"{name} {mine['version']} comes from {mine['location']}, neither the parent's "
                            f"{theirs['location']} nor the environment's own {own}")
    return problems


@functools.lru_cache(maxsize=1)
def _parent_stack() -> dict:
    return inspect_stack(sys.executable)


def check_stack(env_dir: Path) -> None:
    """Refuse an environment that does not see the stack of the interpreter using it."""
    parent, derived = _parent_stack(), inspect_stack(python_of(env_dir))
    problems = stack_problems(parent, derived, os.path.realpath(site_packages_of(env_dir)))
    if problems:
        raise EnvError(f"environment {env_dir} does not see the stack of {sys.executable} (through "
                       f"{PTH_NAME}), so its cases would not run on the same torch: " + "; ".join(problems)
                       + f". Remove {env_dir} to have it made again")


def resolved_versions(env_dir: Path, names=STACK) -> dict[str, str | None]:
    code = ("import importlib.metadata as m, json\n"
            "def v(n):\n try: return m.version(n)\n except m.PackageNotFoundError: return None\n"
            f"print(json.dumps({{n: v(n) for n in {list(names)!r}}}))")
    return json.loads(_run([str(python_of(env_dir)), "-c", code], "reading versions").stdout)


def pinned_names(pins: tuple[str, ...]) -> tuple[str, ...]:
    """The packages a side's pins name that are not of the stack (a direct reference names none): their
    versions are what differs between two sides that leave the stack alone (a control pair, docs/upgrade.md)."""
    names = [re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", pin).group(0) for pin in pins
             if not pin.startswith(("git+", "http://", "https://")) and "@" not in pin]
    return tuple(n for n in dict.fromkeys(names) if n not in STACK)


def ensure_env(spec: EnvSpec, root: Path | None = None) -> tuple[Path, dict]:
    """The environment for spec, made if needed; returns its folder and its ready.json (its `versions`: the
    stack's and those of the pinned packages beyond it)."""
    root = root or envs_root()
    env_dir = root / spec.key
    ready = env_dir / "ready.json"
    names = (*STACK, *pinned_names(spec.pins))
    if ready.is_file():
        info = json.loads(ready.read_text())
        check_stack(env_dir)
        if any(n not in info.get("versions", {}) for n in names):  # made before pinned packages were read
            info["versions"] = resolved_versions(env_dir, names)
        return env_dir, {**info, "cached": True}
    if env_dir.exists():  # a half-made environment from an interrupted call
        shutil.rmtree(env_dir)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        tool = _create(env_dir, spec)
        check_stack(env_dir)
    except (EnvError, subprocess.SubprocessError, OSError):
        shutil.rmtree(env_dir, ignore_errors=True)
        raise
    info = {"pins": list(spec.pins), "python": spec.python, "torch": spec.torch, "base": list(spec.base),
            "made_by": sys.executable, "tool": tool,
            "created_s": round(time.time() - t0, 1), "versions": resolved_versions(env_dir, names)}
    tmp = ready.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, ready)
    return env_dir, {**info, "cached": False}


def available_versions(package: str) -> list[str]:
    """Released versions of a package on the index, oldest first (pre-releases left out)."""
    from packaging.version import InvalidVersion, Version

    proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=300)
    match = re.search(r"Available versions:\s*(.+)", proc.stdout)
    if proc.returncode != 0 or not match:
        raise SuiteError(f"cannot list the versions of {package}: {(proc.stderr or proc.stdout).strip()[-500:]}")
    out = []
    for v in match.group(1).split(","):
        try:
            parsed = Version(v.strip())
        except InvalidVersion:
            continue
        if not parsed.is_prerelease:
            out.append(parsed)
    return [str(v) for v in sorted(out)]


# What pytest-xdist tells a worker about itself: a pytest started from a worker must not inherit it, or
# it takes itself for a worker too (pytest-benchmark then writes no JSON).
XDIST_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


def pytest_env(extra: dict | None = None) -> dict[str, str]:
    """The environment of a pytest this process starts: its own, less xdist's worker identity."""
    env = {k: v for k, v in os.environ.items() if k not in XDIST_VARIABLES}
    return {**env, **(extra or {})}


def run_pytest(env_dir: Path, args: list[str], log: Callable[[str], None] | None = None,
               env: dict | None = None) -> int:
    """pytest with the environment's interpreter, from this checkout; its last line goes to log."""
    cmd = [str(python_of(env_dir)), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=pytest_env(env))
    if log:
        tail = [line for line in proc.stdout.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        log(f"  {' '.join(args[:1])}: exit {proc.returncode}: {tail[0]}")
    return proc.returncode
