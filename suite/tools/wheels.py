"""Carry Python wheels to a machine that has no package index (`python -m suite wheels ...`).

download (here, with an index): resolve the suite's requirements for the TARGET's Python and
platform by walking each wheel's Requires-Dist (`pip download --no-deps`, one batch per level),
leave out what the target already has (torch and its stack, by default), keep one version per
package, and write manifest.json (names, versions, sizes, sha256).
install (there): check the files against the manifest, then `pip install --no-index`.

pip alone cannot do the download: it has no notion of "the target already has torch", so it
would fetch torch and the CUDA wheels (gigabytes) for every package that names torch. This
module imports only the standard library at the top: `install` runs on a bare interpreter.
"""
from __future__ import annotations

import argparse
import email.parser
import fnmatch
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from suite.errors import SuiteError
from suite.paths import ROOT

MANIFEST = "manifest.json"
MANIFEST_KIND = "ftsuite.wheels"
# What a GPU machine with a CUDA build of torch and the Hugging Face stack has (their own
# requirements are added from this machine's installed metadata, see provided_closure).
# (torch's CUDA runtime wheels are nvidia-cu*, nvidia-nccl*, ...; nvidia-ml-py is not one of them)
CUDA_WHEELS = ("nvidia-cu*", "nvidia-nccl*", "nvidia-nvjitlink*", "nvidia-nvshmem*", "nvidia-nvtx*")
DEFAULT_HAVE = ("torch", "transformers", "peft", "accelerate", "triton", *CUDA_WHEELS)
# Replacing these would swap the target's CUDA build of torch: a conflict with them is an error.
NEVER_CARRY = ("torch", "triton", *CUDA_WHEELS)


class WheelError(SuiteError):
    """A requirement cannot be met for the target; the message says what to change."""


def canonical(name: str) -> str:
    """PEP 503 name: 'Typing_Extensions' -> 'typing-extensions'."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Target:
    """The machine the wheels are for."""

    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    glibc: str = "2.28"  # manylinux_2_N wheels are taken for every N up to this
    machine: str = "x86_64"

    def platforms(self) -> list[str]:
        """pip matches --platform tags exactly, so every manylinux level up to the target's is listed."""
        major, minor = (int(x) for x in self.glibc.split(".")[:2])
        if major != 2 or minor < 5:
            raise WheelError(f"--glibc {self.glibc}: expected 2.N with N >= 5 (e.g. 2.28, 2.35)")
        tags = [f"manylinux_2_{n}_{self.machine}" for n in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        return tags + [f"{name}_{self.machine}" for n, name in legacy.items() if n <= minor]

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python_version, "--implementation", "cp"]
        for tag in self.platforms():
            args += ["--platform", tag]
        return args

    def marker_env(self) -> dict[str, str]:
        full = self.python_version if self.python_version.count(".") == 2 else self.python_version + ".0"
        return {"python_version": ".".join(self.python_version.split(".")[:2]), "python_full_version": full,
                "implementation_name": "cpython", "implementation_version": full,
                "platform_python_implementation": "CPython", "platform_system": "Linux", "sys_platform": "linux",
                "os_name": "posix", "platform_machine": self.machine, "platform_release": "", "platform_version": ""}


@dataclass(frozen=True)
class Wheel:
    name: str  # canonical
    version: str
    path: Path
    requires: tuple[str, ...]  # Requires-Dist lines


@dataclass
class Resolution:
    wheels: dict[str, Wheel] = field(default_factory=dict)
    provided: dict[str, str | None] = field(default_factory=dict)  # on the target already: name -> version
    upgrades: list[dict] = field(default_factory=list)  # target has it, but too old for a requirement
    requested_by: dict[str, set[str]] = field(default_factory=dict)


# ------------------------------------------------------------------ what the target has

def parse_have(lines: Iterable[str]) -> dict[str, str | None]:
    """`pip list --format=freeze` lines (or bare names, or globs like nvidia-*) -> name -> version."""
    have: dict[str, str | None] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, version = _split_have(line)
        have[canonical(name) if "*" not in name else name.lower()] = version
    return have


def _split_have(line: str) -> tuple[str, str | None]:
    if "==" in line:
        name, version = line.split("==", 1)
        return name.strip(), version.strip()
    return re.split(r"[\s@;<>=!~\[]", line, maxsplit=1)[0], None


def _have_version(have: dict[str, str | None], name: str) -> tuple[bool, str | None]:
    if name in have:
        return True, have[name]
    return any(fnmatch.fnmatch(name, pat) for pat in have if "*" in pat), None


def provided_closure(have: dict[str, str | None], target: Target) -> dict[str, str | None]:
    """The target's packages plus what they require, read from this machine's installed metadata.

    A machine with transformers has numpy, huggingface-hub, safetensors...: those must not be
    carried (a second numpy shadowing the target's is the kind of mix the install refuses).
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    out = dict(have)
    todo = [n for n in have if "*" not in n]
    while todo:
        name = todo.pop()
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker and not req.marker.evaluate({**target.marker_env(), "extra": ""}):
                continue
            dep = canonical(req.name)
            if dep not in out:
                out[dep] = None
                todo.append(dep)
    return out


# ------------------------------------------------------------------ resolving

Fetch = Callable[[list[str]], dict[str, Wheel]]


def resolve(needs: list[str], have: dict[str, str | None], target: Target, fetch: Fetch,
            max_rounds: int = 50) -> Resolution:
    """The closure of `needs` for the target, minus what it has; fetch(specs) downloads a batch."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    env = target.marker_env()
    res = Resolution()
    specs: dict[str, SpecifierSet] = {}
    extras: dict[str, set[str]] = {}
    queue: list[tuple[Requirement, str]] = [(Requirement(n), "(requested)") for n in needs]
    for _ in range(max_rounds):
        batch: dict[str, str] = {}
        for req, parent in queue:
            name = canonical(req.name)
            res.requested_by.setdefault(name, set()).add(parent)
            if name not in specs and _satisfied_by_target(req, name, parent, have, res):
                continue
            specs[name] = specs.get(name, SpecifierSet()) & req.specifier
            new_extras = set(req.extras) - extras.setdefault(name, set())
            extras[name] |= set(req.extras)
            chosen = res.wheels.get(name)
            if chosen is not None and specs[name].contains(chosen.version, prereleases=True):
                if new_extras:  # the chosen wheel's requirements under the new extras (appended: seen this round)
                    queue.extend(_deps(chosen, extras[name], env))
                continue
            batch[name] = f"{name}{specs[name]}"
        if not batch:
            return _prune(needs, res, extras, env)
        fetched = fetch(sorted(batch.values()))
        missing = sorted(set(batch) - set(fetched))
        if missing:
            raise WheelError(f"pip returned no wheel for {', '.join(batch[m] for m in missing)}")
        queue = []
        for name, wheel in fetched.items():
            old = res.wheels.get(name)
            if old is not None and old.path != wheel.path:
                old.path.unlink(missing_ok=True)  # one version per package
            res.wheels[name] = wheel
            queue += _deps(wheel, extras.get(name, set()), env)
    raise WheelError(f"no stable set of versions after {max_rounds} rounds")


def _satisfied_by_target(req, name: str, parent: str, have: dict[str, str | None], res: Resolution) -> bool:
    """True when the target's own copy serves; a too-old copy is carried anew (unless NEVER_CARRY)."""
    on_target, version = _have_version(have, name)
    if not on_target:
        return False
    if version is None or not req.specifier or req.specifier.contains(version, prereleases=True):
        res.provided[name] = version
        return True
    if any(fnmatch.fnmatch(name, pat) for pat in NEVER_CARRY):
        raise WheelError(f"{parent} requires {req}, but the target has {name} {version}, which is never carried "
                         f"(it would replace the target's CUDA build); pin an older {parent.split()[0]}")
    res.provided.pop(name, None)
    res.upgrades.append({"name": name, "have": version, "required": str(req.specifier), "by": parent})
    return False


def _deps(wheel: Wheel, extras: set[str], env: dict) -> list:
    from packaging.requirements import Requirement

    out = []
    for line in wheel.requires:
        req = Requirement(line)
        if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in extras | {""}):
            continue
        out.append((req, f"{wheel.name} {wheel.version}"))
    return out


def _prune(needs: list[str], res: Resolution, extras: dict[str, set[str]], env: dict) -> Resolution:
    """Drop wheels only an earlier, replaced version needed."""
    from packaging.requirements import Requirement

    reach: set[str] = set()
    todo = [canonical(Requirement(n).name) for n in needs]
    while todo:
        name = todo.pop()
        if name in reach or name not in res.wheels:
            continue
        reach.add(name)
        todo += [canonical(r.name) for r, _ in _deps(res.wheels[name], extras.get(name, set()), env)]
    for name in sorted(set(res.wheels) - reach):
        res.wheels.pop(name).path.unlink(missing_ok=True)
    return res


def read_wheel(path: Path) -> Wheel:
    """Name, version and Requires-Dist of a wheel file."""
    with zipfile.ZipFile(path) as zf:
        meta_name = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None)
        if meta_name is None:
            raise WheelError(f"{path.name}: no .dist-info/METADATA inside; not a wheel")
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode("utf-8", "replace"))
    return Wheel(canonical(meta["Name"]), meta["Version"], path, tuple(meta.get_all("Requires-Dist") or ()))


def pip_fetch(dest: Path, target: Target, pip_extra: list[str] | None = None, log=print) -> Fetch:
    """A fetch that runs `pip download --no-deps` for a batch into a fresh folder, then moves it to dest."""
    def fetch(specs: list[str]) -> dict[str, Wheel]:
        log(f"  pip download {len(specs)}: {' '.join(specs)}")
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                   *target.pip_args(), *(pip_extra or []), "-d", tmp, *specs]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                errors = [ln for ln in proc.stderr.splitlines() if "is ignored" not in ln]
                raise WheelError(f"pip download failed for the target (Python {target.python_version}, "
                                 f"glibc {target.glibc}, {target.machine}):\n" + "\n".join(errors[-15:]))
            out = {}
            for path in Path(tmp).glob("*.whl"):
                final = dest / path.name
                shutil.move(str(path), final)
                wheel = read_wheel(final)
                out[wheel.name] = wheel
            return out
    return fetch


# ------------------------------------------------------------------ the suite's requirements

def suite_requirements(extras: Iterable[str] = ()) -> list[str]:
    """The suite's dependencies (pyproject.toml, else the installed ftsuite's metadata), plus extras."""
    try:
        import tomllib

        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        reqs = list(project["dependencies"])
        for extra in extras:
            if extra not in project.get("optional-dependencies", {}):
                raise WheelError(f"unknown extra {extra!r}; pyproject.toml declares "
                                 f"{', '.join(project.get('optional-dependencies', {}))}")
            reqs += project["optional-dependencies"][extra]
        return reqs
    except (ImportError, FileNotFoundError):
        from importlib import metadata

        lines = metadata.requires("ftsuite") or []
        return [ln.split(";")[0].strip() for ln in lines
                if "extra ==" not in ln or any(f'extra == "{e}"' in ln for e in extras)]


def download(dest: Path, needs: list[str], have: dict[str, str | None], target: Target,
             pip_extra: list[str] | None = None, fetch: Fetch | None = None, log=print) -> dict:
    """Resolve and download into dest; write and return its manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    stale = sorted(p.name for p in dest.glob("*.whl"))
    if stale:
        raise WheelError(f"{dest} already holds {len(stale)} wheels ({stale[0]}, ...): two versions of a package "
                         f"stop the install, so download into an empty folder")
    started = time.time()
    provided = provided_closure(have, target)
    res = resolve(needs, provided, target, fetch or pip_fetch(dest, target, pip_extra, log))
    wheels = []
    for name, w in sorted(res.wheels.items()):
        wheels.append({"name": name, "version": w.version, "file": w.path.name, "bytes": w.path.stat().st_size,
                       "sha256": sha256(w.path), "requested_by": sorted(res.requested_by.get(name, ()))})
    manifest = {
        "kind": MANIFEST_KIND, "schema_version": 1, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "target": {"python_version": target.python_version, "glibc": target.glibc, "machine": target.machine,
                   "platforms": target.platforms()},
        "requirements": needs, "have": have,
        "provided": {k: v for k, v in sorted(res.provided.items())}, "upgrades": res.upgrades,
        "wheels": wheels, "count": len(wheels), "total_bytes": sum(w["bytes"] for w in wheels),
        "seconds": round(time.time() - started, 1),
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ installing on the target

def verify(folder: Path) -> dict:
    """The folder's manifest, once every listed wheel is there with its size and sha256."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise WheelError(f"{folder / MANIFEST} not found: make the folder with `python -m suite wheels download`") from None
    if manifest.get("kind") != MANIFEST_KIND:
        raise WheelError(f"{folder / MANIFEST} is not a wheels manifest (kind {manifest.get('kind')!r})")
    bad = []
    for w in manifest["wheels"]:
        path = folder / w["file"]
        if not path.is_file():
            bad.append(f"{w['file']}: missing")
        elif path.stat().st_size != w["bytes"] or sha256(path) != w["sha256"]:
            bad.append(f"{w['file']}: size or sha256 differs from the manifest (truncated copy?)")
    if bad:
        raise WheelError(f"{folder}: " + "; ".join(bad))
    return manifest


def install_command(folder: Path, manifest: dict, target_dir: Path | None, python: str = sys.executable) -> list[str]:
    base = [python, "-m", "pip", "install", "--no-index", "--no-cache-dir", "--disable-pip-version-check"]
    if target_dir is not None:  # a folder put on PYTHONPATH, nothing else touched (docs/gpu.md)
        return base + ["--no-deps", "--no-compile", "--upgrade", "--target", str(target_dir),
                       *[str(folder / w["file"]) for w in manifest["wheels"]]]
    # into the environment: pip checks every requirement against what is installed and the folder
    return base + ["--find-links", str(folder), *[f"{w['name']}=={w['version']}" for w in manifest["wheels"]]]


def remove_replaced(target_dir: Path, manifest: dict, log=print) -> list[str]:
    """Uninstall from a --target folder the other versions of the packages about to go in.

    `pip install --target --upgrade` overwrites files but leaves the old `*.dist-info` (and files
    the new version no longer has): two versions would then answer importlib.metadata, and the
    records would name either. Each stale one is removed by its RECORD, as pip uninstall would.
    """
    incoming = {canonical(w["name"]): w["version"] for w in manifest["wheels"]}
    removed = []
    for info in sorted(Path(target_dir).glob("*.dist-info")) if Path(target_dir).is_dir() else []:
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        if canonical(name) not in incoming or version == incoming[canonical(name)]:
            continue
        record = info / "RECORD"
        for line in record.read_text().splitlines() if record.is_file() else []:
            rel = line.split(",", 1)[0]
            path = (Path(target_dir) / rel).resolve()
            if rel and Path(target_dir).resolve() in path.parents and path.is_file():
                path.unlink()
        shutil.rmtree(info, ignore_errors=True)
        removed.append(f"{canonical(name)} {version}")
        log(f"  removed {canonical(name)} {version} from {target_dir} (replaced by {incoming[canonical(name)]})")
    return removed


def install(folder: Path, target_dir: Path | None = None, python: str = sys.executable, log=print) -> list[dict]:
    manifest = verify(folder)
    if target_dir is not None:
        remove_replaced(target_dir, manifest, log)
    cmd = install_command(folder, manifest, target_dir, python)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise WheelError(f"pip install exited with {proc.returncode}")
    for w in manifest["wheels"]:
        log(f"  {w['name']} {w['version']}")
    where = f"into {target_dir} (export PYTHONPATH={target_dir}:$PYTHONPATH)" if target_dir else "into the environment"
    log(f"installed {len(manifest['wheels'])} wheels, {manifest['total_bytes'] / 2**20:.1f} MiB, {where}")
    return manifest["wheels"]


# ------------------------------------------------------------------ CLI (python -m suite wheels ...)

def add_parser(sub: argparse._SubParsersAction) -> None:
    wheels = sub.add_parser("wheels", help="carry wheels to a GPU machine without a package index")
    verbs = wheels.add_subparsers(dest="wheels_command", required=True)
    dl = verbs.add_parser("download", help="resolve and download wheels for a target machine into a folder")
    dl.add_argument("requirements", nargs="*", help="requirements (default: the suite's, from pyproject.toml)")
    dl.add_argument("--dest", type=Path, default=ROOT / ".whl", help="an empty folder (default: .whl)")
    dl.add_argument("--extra", action="append", default=[], help="also the suite's extra NAME (gpu: flash-attn, unsloth)")
    dl.add_argument("--python-version", default=Target.python_version, help="the target's Python, e.g. 3.12")
    dl.add_argument("--glibc", default=Target.glibc, help="the target's glibc, e.g. 2.35 (default 2.28)")
    dl.add_argument("--machine", default=Target.machine, help="x86_64 or aarch64")
    dl.add_argument("--have", action="append", default=None, metavar="NAME[==VER]",
                    help=f"a package the target has (repeatable; default: {' '.join(DEFAULT_HAVE)})")
    dl.add_argument("--have-file", type=Path, help="the target's `pip list --format=freeze` (adds to --have)")
    dl.add_argument("--pip-arg", action="append", default=[], help="passed to pip download, e.g. --pip-arg=--find-links=DIR")
    dl.set_defaults(func=cmd_download)
    ins = verbs.add_parser("install", help="check a downloaded folder against its manifest and pip install it, offline")
    ins.add_argument("folder", type=Path, nargs="?", default=ROOT / ".whl")
    ins.add_argument("--target", type=Path, help="install into this folder (then put it on PYTHONPATH)")
    ins.set_defaults(func=cmd_install)


def cmd_download(args: argparse.Namespace, extra: list[str]) -> int:
    have = parse_have(args.have if args.have is not None else DEFAULT_HAVE)
    if args.have_file:
        have.update(parse_have(args.have_file.read_text().splitlines()))
    target = Target(args.python_version, args.glibc, args.machine)
    needs = args.requirements or suite_requirements(args.extra)
    print(f"resolving {len(needs)} requirements for Python {target.python_version}, glibc {target.glibc}, "
          f"{target.machine}; the target has {_names(have)}", file=sys.stderr)
    m = download(args.dest, needs, have, target, args.pip_arg, log=lambda s: print(s, file=sys.stderr))
    for w in m["wheels"]:
        print(f"{w['name']:28s} {w['version']:14s} {w['bytes'] / 2**20:8.2f} MiB  {w['file']}")
    for u in m["upgrades"]:
        print(f"note: the target's {u['name']} {u['have']} is too old for {u['by']} ({u['required']}); carried anew")
    print(f"{m['count']} wheels, {m['total_bytes'] / 2**20:.1f} MiB in {args.dest} ({m['seconds']} s); "
          f"manifest: {args.dest / MANIFEST}")
    return 0


def _names(have: dict) -> str:
    names = sorted(have)
    return ", ".join(names) if len(names) <= 12 else f"{', '.join(names[:12])} and {len(names) - 12} more"


def cmd_install(args: argparse.Namespace, extra: list[str]) -> int:
    install(args.folder, args.target)
    return 0
