"""Derived environments see the stack of the interpreter that made them, from a real venv.

The parent here is a virtual environment whose stack is not in its base interpreter (as with any
venv the stack was installed into): a package `ftsuite-probe` lives only in the parent's own
folder. Made from that parent with `--system-site-packages`, an environment would see the base
interpreter instead and miss it (the bug of 2026-12-01); layered over the parent it must see it,
the parent's torch, and its own pins first.
"""
from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from suite.paths import ROOT
from suite.tools import envs


def _dist(folder: Path, name: str, version: str) -> None:
    """An installed distribution by hand: a module and its dist-info (what pip would leave)."""
    mod = name.replace("-", "_")
    (folder / f"{mod}.py").write_text(f"VERSION = {version!r}\n")
    info = folder / f"{mod}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("")


def _wheel(folder: Path, name: str, version: str) -> Path:
    mod = name.replace("-", "_")
    path = folder / f"{mod}-{version}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{mod}.py", f"VERSION = {version!r}\n")
        zf.writestr(f"{mod}-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{mod}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                        "Tag: py3-none-any\n")
        zf.writestr(f"{mod}-{version}.dist-info/RECORD", "")
    return path


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A real venv (not made with system site-packages) whose own site-packages holds ftsuite-probe
    1.0 and, through a .pth, this interpreter's stack (torch, trl, ...), as an installed venv would."""
    tmp = tmp_path_factory.mktemp("parent")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                   "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                                  check=True).stdout.strip())
    _dist(purelib, "ftsuite-probe", "1.0")
    _dist(purelib, "ftsuite-pinned", "1.0")
    outer = [d for d in site.getsitepackages() if os.path.isdir(d)]
    (purelib / "outer_stack.pth").write_text("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in outer) + "\n")
    return venv


def _in(python: Path, code: str, **env) -> str:
    out = subprocess.run([str(python), "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_an_environment_made_from_a_venv_sees_that_venvs_stack(parent, tmp_path):
    wheels = tmp_path / "wheels"
    _wheel(wheels, "ftsuite-pinned", "2.0")
    made = json.loads(_in(parent / "bin" / "python", f"""
        import json
        from suite.tools import envs
        spec = envs.EnvSpec(("ftsuite-pinned==2.0",), pip_args=("--no-index", "--find-links", {str(wheels)!r}))
        env_dir, info = envs.ensure_env(spec, root=__import__("pathlib").Path({str(tmp_path / "envs")!r}))
        print(json.dumps({{"dir": str(env_dir), "cached": info["cached"]}}))
    """))
    env_python = Path(made["dir"]) / "bin" / "python"
    seen = json.loads(_in(env_python, """
        import json, ftsuite_probe, ftsuite_pinned, torch, trl
        print(json.dumps({"probe": ftsuite_probe.__file__, "pinned": ftsuite_pinned.VERSION, "torch": torch.__file__}))
    """))
    parent_seen = json.loads(_in(parent / "bin" / "python", """
        import json, ftsuite_probe, torch
        print(json.dumps({"probe": ftsuite_probe.__file__, "torch": torch.__file__}))
    """))
    assert seen["probe"] == parent_seen["probe"]  # the parent venv's own package, not its base's
    assert os.path.realpath(seen["torch"]) == os.path.realpath(parent_seen["torch"])
    assert seen["pinned"] == "2.0"  # the environment's pin comes before the parent's 1.0
    # cached: reused, and checked again
    again = json.loads(_in(parent / "bin" / "python", f"""
        import json, pathlib
        from suite.tools import envs
        spec = envs.EnvSpec(("ftsuite-pinned==2.0",), pip_args=("--no-index", "--find-links", {str(wheels)!r}))
        print(json.dumps({{"dir": str(envs.ensure_env(spec, root=pathlib.Path({str(tmp_path / "envs")!r}))[0])}}))
    """))
    assert again["dir"] == made["dir"]

    # An environment that lost sight of the stack is refused, naming what it misses.
    (envs.site_packages_of(Path(made["dir"])) / envs.PTH_NAME).unlink()
    out = subprocess.run([str(parent / "bin" / "python"), "-c", textwrap.dedent(f"""
        import pathlib
        from suite.tools import envs
        spec = envs.EnvSpec(("ftsuite-pinned==2.0",), pip_args=("--no-index", "--find-links", {str(wheels)!r}))
        envs.ensure_env(spec, root=pathlib.Path({str(tmp_path / "envs")!r}))
    """)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert "does not see the stack of" in out.stderr and "torch does not import" in out.stderr, out.stderr[-2000:]
    assert "trl " in out.stderr and "is missing" in out.stderr


def test_stack_problems_name_what_is_missing_or_foreign():
    parent = {"torch.__file__": "/p/torch/__init__.py", "torch.import": "ok",
              "trl": {"version": "1.16.0", "location": "/p"}, "peft": {"version": "0.21.2", "location": "/p"},
              "datasets": {"version": "5.2.0", "location": "/p"}}
    fine = {**parent, "trl": {"version": "1.17.0", "location": "/env"}}
    assert envs.stack_problems(parent, fine, "/env") == []
    bad = {**parent, "torch.__file__": "/base/torch/__init__.py", "peft": None,
           "datasets": {"version": "4.0.0", "location": "/base"}}
    problems = envs.stack_problems(parent, bad, "/env")
    assert problems[0] == "torch is /base/torch/__init__.py, not the parent's /p/torch/__init__.py"
    assert "peft 0.21.2 (installed in /p) is missing" in problems
    assert any(p.startswith("datasets 4.0.0 comes from /base") for p in problems)


def test_a_side_that_pins_a_package_beyond_the_stack_records_its_version():
    """A control pair (docs/upgrade.md) changes only nvidia-ml-py: its versions are what tells the two sides
    apart, so an environment's `versions` carry the pinned packages beyond the stack."""
    assert envs.pinned_names(("nvidia-ml-py==13.610.43", "trl==1.16.0", "git+https://github.com/o/r@main",
                              "peft>=0.15")) == ("nvidia-ml-py",)
    assert envs.pinned_names(("trl==1.16.0",)) == ()
