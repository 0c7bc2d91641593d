"""Installed package versions, the one list of the stack's packages, and the pins of the control lock
(read here, below the stages that compare an environment with it; suite/tools/lock.py makes it)."""
from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

from suite.errors import LockError
from suite.paths import LOCK_FILE, display

# The stack under test: what the control lock pins at the top, golden curves record, envs check.
STACK = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes")
# Every package whose version a run records, and the ones a report's header names (in this order).
PACKAGES = (*STACK, "unsloth", "flash-attn", "safetensors", "tokenizers", "pytest", "pytest-benchmark")
HEADLINE = ("trl", "transformers", "peft", "torch", "accelerate", "bitsandbytes", "unsloth")


def package_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _vtuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def version_at_least(version: str | None, minimum: str) -> bool:
    return version is not None and _vtuple(version) >= _vtuple(minimum)


LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*(.+))?$")


def norm_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = LOCK_FILE) -> dict[str, str]:
    """name -> version of every line of a lock (or input) file whose marker holds here."""
    from packaging.markers import Marker

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise LockError(f"{display(path)}: cannot read: {exc.strerror or exc}") from None
    pins = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = LOCK_LINE.match(line)
        if not match:
            raise LockError(f"{display(path)}: line {n}: {raw.strip()!r} is not `name==version [; marker]`")
        name, version, marker = match.groups()
        if marker is None or Marker(marker).evaluate():
            pins[norm_name(name)] = version
    return pins


def differences_from_lock(packages: dict[str, str | None], path: Path = LOCK_FILE) -> list[str]:
    """`transformers 5.24.0 (lock: 5.23.0)` for each stack package installed in another version."""
    try:
        pins = read_pins(path)
    except LockError:
        return []
    out = []
    for name in STACK:
        locked, installed = pins.get(norm_name(name)), packages.get(name)
        if locked and (installed or "").split("+")[0] != locked.split("+")[0]:
            out.append(f"{name} {installed} (lock: {locked})")
    return out
