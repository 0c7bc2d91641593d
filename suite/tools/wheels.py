"""Carry Python wheels to a machine that has no package index (`python -m suite wheels ...`).

download (here, with an index): uv resolves the requirements for the TARGET's Python and platform
(`uv pip compile --python-version 3.12 --python-platform x86_64-manylinux_2_28 --only-binary :all:
--generate-hashes`) under constraints that pin what the target has (its package list); pip downloads
what is to be carried (`pip download --no-deps --only-binary=:all: --require-hashes`, against uv's
hashes); the folder gets manifest.json (names, versions, sizes, sha256, who asked for each) and
requirements.txt (each carried pin with its file's sha256). `--lock FILE` also writes the whole
pinned set, the target's packages and the carried ones, as a lock; `--from-lock FILE` downloads
exactly a lock's carried files again, without resolving.
install (there): `pip install --no-index --find-links FOLDER --require-hashes -r FOLDER/requirements.txt`
(pip checks the hashes; with `--target`, `--no-deps` into a folder put on PYTHONPATH).

What is left here is what uv and pip do not do: turn the target's package list into constraints,
cut the carried set where the requirements reach a package the target has (uv resolves torch, the
target has it: nothing under it is carried), refuse to carry torch, triton or the CUDA wheels, and
clean a --target folder of the metadata of versions it replaces. This module imports only the
standard library at the top: `install` runs on a bare interpreter.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from suite.errors import SuiteError
from suite.paths import ROOT

MANIFEST = "manifest.json"
REQUIREMENTS = "requirements.txt"  # in the folder: `name==version --hash=sha256:...` of each carried file
MANIFEST_KIND = "ftsuite.wheels"
# What a GPU machine with a CUDA build of torch and the Hugging Face stack has, when no list is given
# (torch's CUDA runtime wheels are nvidia-cu*, nvidia-nccl*, ...; nvidia-ml-py is not one of them).
CUDA_WHEELS = ("nvidia-cu*", "nvidia-nccl*", "nvidia-nvjitlink*", "nvidia-nvshmem*", "nvidia-nvtx*")
DEFAULT_HAVE = ("torch", "transformers", "peft", "accelerate", "triton", *CUDA_WHEELS)
# Carrying these would replace the target's CUDA build of torch: never carried.
NEVER_CARRY = ("torch", "triton", *CUDA_WHEELS)
UV_GLIBC = (17, 28, *range(31, 41))  # uv's --python-platform manylinux levels
_CARRIED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s+#\s*carried:\s*(\S+\.whl)\s+sha256:([0-9a-f]{64})")


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

    def _glibc_minor(self) -> int:
        try:
            major, minor = (int(x) for x in self.glibc.split(".")[:2])
        except ValueError:
            major, minor = 0, 0
        if major != 2 or minor < 17:
            raise WheelError(f"--glibc {self.glibc}: expected 2.N with N >= 17 (e.g. 2.28, 2.35)")
        return minor

    def uv_platform(self) -> str:
        """uv knows some manylinux levels: the highest at or under the target's glibc."""
        minor = self._glibc_minor()
        return f"{self.machine}-manylinux_2_{max(n for n in UV_GLIBC if n <= minor)}"

    def platforms(self) -> list[str]:
        """pip matches --platform tags exactly, so every manylinux level up to the target's is listed."""
        minor = self._glibc_minor()
        tags = [f"manylinux_2_{n}_{self.machine}" for n in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        return tags + [f"{name}_{self.machine}" for n, name in legacy.items() if n <= minor]

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python_version, "--implementation", "cp"]
        for tag in self.platforms():
            args += ["--platform", tag]
        return args

    def describe(self) -> str:
        return f"Python {self.python_version}, {self.uv_platform()}"


# ------------------------------------------------------------------ what the target has

def parse_have(lines: Iterable[str]) -> dict[str, str | None]:
    """`pip list --format=freeze` lines (or bare names, or globs like nvidia-*) -> name -> version."""
    have: dict[str, str | None] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if "==" in line:
            name, version = (s.strip() for s in line.split("==", 1))
        else:
            name, version = re.split(r"[\s@;<>=!~\[]", line, maxsplit=1)[0], None
        have[canonical(name) if "*" not in name else name.lower()] = version
    return have


def read_have(path: Path) -> dict[str, str | None]:
    """A have list from a freeze-like file, or from a wheels folder's manifest.json (what it carries)."""
    text = Path(path).read_text()
    if Path(path).suffix == ".json":
        manifest = json.loads(text)
        if manifest.get("kind") != MANIFEST_KIND:
            raise WheelError(f"{path}: not a wheels manifest (kind {manifest.get('kind')!r})")
        return {w["name"]: w["version"] for w in manifest["wheels"]}
    return parse_have(text.splitlines())


def on_target(name: str, have: dict[str, str | None]) -> bool:
    return name in have or any(fnmatch.fnmatch(name, pat) for pat in have if "*" in pat)


def constraints(have: dict[str, str | None], replace: Iterable[str] = ()) -> list[str]:
    """The target's versions as uv constraints (a --replace'd package is left free)."""
    free = {canonical(n) for n in replace}
    return [f"{n}=={v}" for n, v in sorted(have.items()) if v and "*" not in n and n not in free]


# ------------------------------------------------------------------ resolving (uv) and cutting

@dataclass
class Pin:
    name: str
    version: str
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)  # uv's annotation: names, "-r FILE", "-c FILE", "x (pyproject.toml)"


def parse_compiled(text: str) -> dict[str, Pin]:
    """uv pip compile's requirements.txt output (hashes and `# via` annotations) -> name -> Pin."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not raw[0].isspace():
            current = None
            if line.startswith("#"):
                continue
            match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
            if not match:
                raise WheelError(f"uv's output has a line that is no pin: {raw!r}")
            current = pins[canonical(match[1])] = Pin(canonical(match[1]), match[2])
        elif current is not None and line.startswith("--hash="):
            current.hashes.append(line[len("--hash="):].rstrip(" \\"))
        elif current is not None and line.startswith("#"):
            entry = line.lstrip("#").strip()
            if entry == "via" or entry.startswith("via "):
                entry = entry[len("via"):].strip()
            if entry:
                current.via.append(entry)
    return pins


def uv_compile(inputs: list[str], have: dict[str, str | None], target: Target, replace: Iterable[str] = (),
               extras: Iterable[str] = (), index_args: list[str] | None = None) -> tuple[dict[str, Pin], str]:
    """uv's resolution of the inputs (requirement files, or requirements) for the target."""
    with tempfile.TemporaryDirectory() as tmp:
        loose = [i for i in inputs if not Path(i).is_file()]
        files = [_shown(Path(i)) for i in inputs if Path(i).is_file()]  # uv runs in ROOT; `# via -r` names them
        if loose:
            (Path(tmp) / "requested.in").write_text("\n".join(loose) + "\n")
            files.append(str(Path(tmp) / "requested.in"))
        (Path(tmp) / "target.txt").write_text("\n".join(constraints(have, replace)) + "\n")
        # --python: uv would otherwise look for a 3.12 interpreter it does not need (seconds)
        cmd = [sys.executable, "-m", "uv", "pip", "compile", *files, "-c", str(Path(tmp) / "target.txt"),
               "--python", sys.executable, "--python-version", target.python_version,
               "--python-platform", target.uv_platform(), "--only-binary", ":all:", "--generate-hashes",
               "--annotation-style", "split",
               "--no-header", "--quiet", *[a for e in extras for a in ("--extra", e)], *(index_args or [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise WheelError(f"uv found no set of versions for {target.describe()} with the target's packages "
                             f"pinned:\n{proc.stderr.strip()[-3000:]}\n(pin an older requirement, or --replace NAME "
                             f"to carry another version of a package the target has)")
    version = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True, text=True).stdout.strip()
    return parse_compiled(proc.stdout), version


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if ROOT in path.parents else str(path)


def cut(pins: dict[str, Pin], have: dict[str, str | None], replace: Iterable[str] = ()) -> list[str]:
    """What to carry: the packages the requested ones reach in the resolution without passing
    through one the target has. The target has its packages' requirements too (in uv's resolution:
    transformers brings numpy, huggingface-hub, ...; torch its CUDA wheels), even where its list
    does not name them: a second numpy shadowing the target's is the mix to avoid. A --replace'd
    package is carried though the target has it."""
    replaced = {canonical(n) for n in replace}
    children: dict[str, set[str]] = {n: set() for n in pins}
    roots = []
    for name, pin in pins.items():
        for entry in pin.via:
            if canonical(entry) in pins:
                children[canonical(entry)].add(name)
            elif not entry.startswith("-c"):  # "-r FILE", "ftsuite (pyproject.toml)": requested
                roots.append(name)
    if pins and not roots:
        raise WheelError("uv's output names no requested package (`# via -r ...`): are its annotations turned off "
                         "(no-annotate in a uv.toml)?")
    target = {n for n in pins if on_target(n, have) and n not in replaced}
    todo = sorted(target)
    while todo:
        for child in children[todo.pop()] - target - replaced:
            target.add(child)
            todo.append(child)
    carry: set[str] = set()
    todo = sorted(set(roots))
    while todo:
        name = todo.pop()
        if name in carry or name in target:
            continue
        carry.add(name)
        todo += sorted(children[name])
    never = sorted(n for n in carry if any(fnmatch.fnmatch(n, pat) for pat in NEVER_CARRY))
    if never:
        raise WheelError(f"the carried set would hold {', '.join(never)}, which replaces the target's CUDA build: "
                         f"name the target's packages (--have-file, or --have {never[0]}==VERSION)")
    return sorted(carry)


# ------------------------------------------------------------------ downloading (pip)

def pip_download(dest: Path, pins: list[Pin], target: Target, index_args: list[str] | None = None,
                 log=print) -> dict[str, Path]:
    """pip download --no-deps of exactly these pins for the target, checked against their hashes."""
    log(f"  pip download {len(pins)}: {' '.join(f'{p.name}=={p.version}' for p in pins)}")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        req = Path(tmp) / "pins.txt"
        req.write_text("".join(f"{p.name}=={p.version} {' '.join(f'--hash={h}' for h in p.hashes)}\n" for p in pins))
        got = Path(tmp) / "got"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--disable-pip-version-check",
               "-q", *target.pip_args(), *(index_args or []), "-d", str(got), "-r", str(req)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if "is ignored" not in ln]
            raise WheelError(f"pip download failed for {target.describe()}:\n" + "\n".join(errors[-15:]))
        out = {}
        for path in sorted(got.glob("*.whl")):
            name = canonical(path.name.split("-")[0])
            shutil.move(str(path), dest / path.name)
            out[name] = dest / path.name
    missing = sorted({p.name for p in pins} - set(out))
    if missing:
        raise WheelError(f"pip returned no wheel for {', '.join(missing)}")
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(dest: Path, inputs: list[str], have: dict[str, str | None], target: Target, replace: Iterable[str] = (),
             extras: Iterable[str] = (), index_args: list[str] | None = None, lock: Path | None = None,
             from_lock: Path | None = None, have_from: Iterable[str] = (), log=print) -> dict:
    """Resolve (or read a lock), download into dest, write its manifest and requirements.txt."""
    dest.mkdir(parents=True, exist_ok=True)
    stale = sorted(p.name for p in dest.glob("*.whl"))
    if stale:
        raise WheelError(f"{dest} already holds {len(stale)} wheels ({stale[0]}, ...): two versions of a package "
                         f"stop the install, so download into an empty folder")
    replace = sorted({canonical(n) for n in replace})
    never = [n for n in replace if any(fnmatch.fnmatch(n, pat) for pat in NEVER_CARRY)]
    if never:
        raise WheelError(f"--replace {never[0]}: torch, triton and the CUDA wheels are never carried (they would "
                         f"replace the target's CUDA build)")
    if from_lock is not None and lock is not None:
        raise WheelError("--from-lock downloads a lock's carried files, --lock writes a lock from a resolution: "
                         "one of them")
    started = time.time()
    if from_lock is not None:
        pins, resolver = read_lock(from_lock), f"the lock {from_lock}"
        carry = sorted(pins)
    else:
        pins, resolver = uv_compile(inputs, have, target, replace, extras, index_args)
        carry = cut(pins, have, replace)
    files = pip_download(dest, [pins[n] for n in carry], target, index_args, log) if carry else {}
    wheels = []
    for name in carry:
        path = files[name]
        wheels.append({"name": name, "version": pins[name].version, "file": path.name, "bytes": path.stat().st_size,
                       "sha256": sha256(path), "requested_by": sorted(pins[name].via)})
    (dest / REQUIREMENTS).write_text("".join(f"{w['name']}=={w['version']} --hash=sha256:{w['sha256']}\n"
                                             for w in wheels))
    provided = {n: have.get(n) for n in sorted(pins) if n not in carry}
    manifest = {
        "kind": MANIFEST_KIND, "schema_version": 2, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resolver": resolver,
        "target": {"python_version": target.python_version, "glibc": target.glibc, "machine": target.machine,
                   "uv_platform": target.uv_platform(), "pip_platforms": target.platforms()},
        "requirements": inputs, "extras": list(extras), "have_from": list(have_from), "have": have, "replace": replace,
        "provided": provided,
        # what the carried packages need from the target in a version the have list does not give (uv's pick)
        "unknown_versions": {n: pins[n].version for n in sorted(pins) if n not in carry and have.get(n) is None
                             and any(canonical(v) in carry for v in pins[n].via)},
        "upgrades": [{"name": n, "have": have[n], "carried": pins[n].version} for n in replace
                     if n in carry and have.get(n) and have[n] != pins[n].version],
        "wheels": wheels, "count": len(wheels), "total_bytes": sum(w["bytes"] for w in wheels),
        "seconds": round(time.time() - started, 1), "lock": str(lock) if lock else None,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if lock is not None:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text(lock_text(pins, manifest))
    return manifest


# ------------------------------------------------------------------ the lock (the target's whole pinned set)

def lock_text(pins: dict[str, Pin], manifest: dict) -> str:
    """One pin a line, each saying whose it is; carried lines name the file and its sha256.
    `name==version  # comment` lines: suite.tools.lock.read_pins reads it as it reads control.txt."""
    carried = {w["name"]: w for w in manifest["wheels"]}
    have = manifest["have"]
    t = manifest["target"]
    head = ["# The pinned set of a target without a package index: its own packages and the wheels carried to it,",
            f"# resolved by {manifest['resolver']} for Python {t['python_version']}, {t['uv_platform']}, with the",
            f"# target's versions pinned (`python -m suite wheels download`, docs/gpu-session.md), "
            f"{manifest['created_at'][:10]}.",
            f"# requested: {' '.join(manifest['requirements']) or 'pyproject.toml'}"
            + (f" (extras {', '.join(manifest['extras'])})" if manifest["extras"] else "")
            + f"; the target's packages: {' '.join(manifest['have_from']) or 'the --have names'}",
            "# carried: downloaded and installed there (the file and its sha256; `--from-lock` downloads them again)",
            "# target: the target's own, pinned by its package list; target, version not listed: uv's pick, not a",
            "#   reading (the target's own version serves); target, required by its packages: not in its list, but",
            "#   a package it has requires it (uv's pick likewise)"]
    lines = []
    for name, pin in sorted(pins.items()):
        if name in carried:
            tag = f"carried: {carried[name]['file']} sha256:{carried[name]['sha256']}"
        elif have.get(name):
            tag = "target"
        elif on_target(name, have):
            tag = "target, version not listed"
        else:
            tag = "target, required by its packages"
        lines.append(f"{name}=={pin.version}  # {tag}")
    return "\n".join(head + lines) + "\n"


def read_lock(path: Path) -> dict[str, Pin]:
    """The carried lines of a lock written by --lock: name -> Pin with the one file's hash."""
    pins = {}
    for raw in Path(path).read_text().splitlines():
        match = _CARRIED.match(raw.strip())
        if match:
            pins[canonical(match[1])] = Pin(canonical(match[1]), match[2], [f"sha256:{match[4]}"], [f"the lock {path}"])
    if not pins:
        raise WheelError(f"{path}: no `name==version  # carried: FILE sha256:HEX` lines (write it with --lock)")
    return pins


# ------------------------------------------------------------------ installing on the target

def read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise WheelError(f"{folder / MANIFEST} not found: make the folder with `python -m suite wheels download`"
                         ) from None
    if manifest.get("kind") != MANIFEST_KIND or not (folder / REQUIREMENTS).is_file():
        raise WheelError(f"{folder}: not a wheels folder of this suite (manifest kind {manifest.get('kind')!r}, "
                         f"{REQUIREMENTS} {'present' if (folder / REQUIREMENTS).is_file() else 'missing'})")
    return manifest


def install_command(folder: Path, target_dir: Path | None, python: str = sys.executable) -> list[str]:
    """pip checks each file against the sha256 in requirements.txt (hash-checking mode)."""
    cmd = [python, "-m", "pip", "install", "--no-index", "--find-links", str(folder), "--require-hashes",
           "-r", str(folder / REQUIREMENTS), "--no-cache-dir", "--disable-pip-version-check"]
    if target_dir is not None:  # a folder put on PYTHONPATH: pip sees no installed package there, so --no-deps
        cmd += ["--no-deps", "--no-compile", "--upgrade", "--target", str(target_dir)]
    return cmd  # into the environment: pip checks every requirement against what is installed


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
    manifest = read_manifest(folder)
    if target_dir is not None:
        remove_replaced(target_dir, manifest, log)
    proc = subprocess.run(install_command(folder, target_dir, python), capture_output=True, text=True)
    if proc.returncode != 0:
        raise WheelError(f"pip install exited with {proc.returncode}:\n{(proc.stderr or proc.stdout).strip()[-3000:]}")
    for w in manifest["wheels"]:
        log(f"  {w['name']} {w['version']}")
    where = f"into {target_dir} (export PYTHONPATH={target_dir}:$PYTHONPATH)" if target_dir else "into the environment"
    log(f"installed {len(manifest['wheels'])} wheels, {manifest['total_bytes'] / 2**20:.1f} MiB, hashes checked, "
        f"{where}")
    return manifest["wheels"]


# ------------------------------------------------------------------ CLI (python -m suite wheels ...)

def add_parser(sub: argparse._SubParsersAction) -> None:
    wheels = sub.add_parser("wheels", help="carry wheels to a GPU machine without a package index")
    verbs = wheels.add_subparsers(dest="wheels_command", required=True)
    dl = verbs.add_parser("download", help="resolve (uv) and download (pip) wheels for a target machine into a folder")
    dl.add_argument("requirements", nargs="*", help="requirements (default: pyproject.toml's)")
    dl.add_argument("-r", "--requirement", action="append", default=[], metavar="FILE",
                    help="requirements from a file (e.g. requirements/gpu.in)")
    dl.add_argument("--dest", type=Path, default=ROOT / ".whl", help="an empty folder (default: .whl)")
    dl.add_argument("--extra", action="append", default=[], help="with the default: also the extra NAME (gpu: "
                                                                 "flash-attn, unsloth)")
    dl.add_argument("--python-version", default=Target.python_version, help="the target's Python, e.g. 3.12")
    dl.add_argument("--glibc", default=Target.glibc, help="the target's glibc, e.g. 2.35 (default 2.28)")
    dl.add_argument("--machine", default=Target.machine, help="x86_64 or aarch64")
    dl.add_argument("--have", action="append", default=None, metavar="NAME[==VER]",
                    help=f"a package the target has (repeatable; default: {' '.join(DEFAULT_HAVE)})")
    dl.add_argument("--have-file", type=Path, action="append", default=[],
                    help="the target's `pip list --format=freeze`, or a wheels folder's manifest.json (adds to --have)")
    dl.add_argument("--replace", action="append", default=[], metavar="NAME",
                    help="carry NAME in the version the requirements need though the target has one "
                         "(never torch, triton or the CUDA wheels)")
    dl.add_argument("--find-links", action="append", default=[], metavar="DIR", help="also look for wheels in DIR "
                    "(uv and pip; e.g. a flash-attn wheel)")
    dl.add_argument("--no-index", action="store_true", help="only --find-links, no package index")
    dl.add_argument("--lock", type=Path,
                    help="also write the target's whole pinned set here (e.g. requirements/gpu.txt)")
    dl.add_argument("--from-lock", type=Path, help="download a lock's carried files again (their sha256), "
                                                   "without resolving")
    dl.set_defaults(func=cmd_download)
    ins = verbs.add_parser("install", help="pip install a downloaded folder offline, its hashes checked")
    ins.add_argument("folder", type=Path, nargs="?", default=ROOT / ".whl")
    ins.add_argument("--target", type=Path, help="install into this folder (then put it on PYTHONPATH)")
    ins.set_defaults(func=cmd_install)


def cmd_download(args: argparse.Namespace, extra: list[str]) -> int:
    have = parse_have(args.have if args.have is not None else DEFAULT_HAVE)
    for path in args.have_file:
        have.update(read_have(path))
    target = Target(args.python_version, args.glibc, args.machine)
    index_args = [a for d in args.find_links for a in ("--find-links", str(d))]
    index_args += ["--no-index"] if args.no_index else []
    have_from = [str(p) for p in args.have_file]
    have_from += args.have if args.have is not None else [f"(default) {' '.join(DEFAULT_HAVE)}"]
    asked = [*args.requirement, *args.requirements]
    for path in args.requirement:
        if not Path(path).is_file():
            raise WheelError(f"-r {path}: no such file")
    inputs = asked or [str(ROOT / "pyproject.toml")]
    if args.from_lock:
        print(f"downloading the carried files of {args.from_lock} for {target.describe()} (no resolving)",
              file=sys.stderr)
    else:
        print(f"resolving {' '.join(asked) or 'pyproject.toml'} for {target.describe()}; "
              f"the target has {_names(have)}", file=sys.stderr)
    m = download(args.dest, inputs, have, target, args.replace, args.extra if not asked else [],
                 index_args, args.lock, args.from_lock, have_from,
                 log=lambda s: print(s, file=sys.stderr))
    for w in m["wheels"]:
        print(f"{w['name']:28s} {w['version']:14s} {w['bytes'] / 2**20:8.2f} MiB  {w['file']}  "
              f"sha256:{w['sha256'][:16]}")
    for u in m["upgrades"]:
        print(f"note: the target's {u['name']} {u['have']} is replaced by {u['carried']} (--replace)")
    if m["unknown_versions"]:
        needs = ", ".join(f"{n} (uv: {v})" for n, v in m["unknown_versions"].items())
        print(f"note: the carried packages need {needs} "
              f"from the target, whose versions the have list does not give; `pip check` there says whether they fit")
    print(f"{m['count']} wheels, {m['total_bytes'] / 2**20:.1f} MiB in {args.dest} "
          f"({m['seconds']} s, {m['resolver']}); "
          f"manifest: {args.dest / MANIFEST}" + (f"; lock: {args.lock}" if args.lock else ""))
    return 0


def _names(have: dict) -> str:
    names = sorted(have)
    return ", ".join(names) if len(names) <= 12 else f"{', '.join(names[:12])} and {len(names) - 12} more"


def cmd_install(args: argparse.Namespace, extra: list[str]) -> int:
    install(args.folder, args.target)
    return 0



def main(argv: list[str] | None = None) -> int:
    """`python3 -m suite.tools.wheels install ...`: the same verbs without the suite's CLI, whose other
    subcommands import pandas and more (a machine that lacks them can still install the wheels)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m suite.tools.wheels")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv if argv[:1] == ["wheels"] else ["wheels", *argv])
    try:
        return args.func(args, [])
    except WheelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
