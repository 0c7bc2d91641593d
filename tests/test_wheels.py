"""The wheel carrier: resolving for a target without what it has, the manifest, the offline install.

Everything here runs offline against wheels built in the test, except
test_real_download_for_a_cp312_gpu_machine (set FTSUITE_NETWORK_TESTS=1; it asks PyPI).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from suite.tools import wheels
from suite.tools.wheels import Target, WheelError, parse_have, resolve

PY312 = Target("3.12", "2.28", "x86_64")


def make_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal valid pure-Python wheel holding one module, `<name>_mod`."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
        name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name.replace('-', '_')}_mod.py", f"VERSION = {version!r}\n")
        zf.writestr(f"{dist}.dist-info/METADATA", meta)
        zf.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return path


class FakeIndex:
    """fetch() over a dict of name -> {version: requires}; records every batch it was asked for."""

    def __init__(self, folder: Path, index: dict[str, dict[str, tuple[str, ...]]]):
        self.folder, self.index, self.batches = folder, index, []

    def __call__(self, specs: list[str]) -> dict[str, wheels.Wheel]:
        from packaging.requirements import Requirement

        self.batches.append(specs)
        out = {}
        for spec in specs:
            req = Requirement(spec)
            versions = [v for v in self.index[req.name] if req.specifier.contains(v)]
            best = max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
            w = wheels.read_wheel(make_wheel(self.folder, req.name, best, self.index[req.name][best]))
            out[w.name] = w
        return out


def files(folder: Path) -> list[str]:
    return sorted(p.name.split("-py3")[0] for p in folder.glob("*.whl"))


def test_the_target_keeps_its_own_packages_and_markers_are_the_targets(tmp_path):
    fetch = FakeIndex(tmp_path, {
        "trl": {"1.0": ("torch>=2", "datasets", "numpy", 'tomli; python_version < "3.11"', 'pywin; sys_platform == "win32"')},
        "datasets": {"1.0": ("numpy", "pyarrow>=20", 'pytest; extra == "test"')},
        "pyarrow": {"19.0": (), "21.0": ("numpy",)},
        "tomli": {"2.0": ()},
    })
    res = resolve(["trl>=1"], {"torch": None, "numpy": "2.0"}, PY312, fetch)
    assert sorted(res.wheels) == ["datasets", "pyarrow", "trl"] and res.wheels["pyarrow"].version == "21.0"
    assert res.provided == {"torch": None, "numpy": "2.0"} and not res.upgrades
    assert fetch.batches == [["trl>=1"], ["datasets"], ["pyarrow>=20"]]
    older = tmp_path / "py310"
    older.mkdir()
    assert "tomli" in resolve(["trl"], {"torch": None, "numpy": None}, Target("3.10"), FakeIndex(older, fetch.index)).wheels


def test_extras_pull_their_requirements(tmp_path):
    fetch = FakeIndex(tmp_path, {"a": {"1.0": ('b; extra == "x"', 'c; extra == "y"')}, "b": {"1.0": ()}, "c": {"1.0": ()}})
    assert sorted(resolve(["a[x]"], {}, PY312, fetch).wheels) == ["a", "b"]
    assert sorted(resolve(["a", "a[y]"], {}, PY312, FakeIndex(tmp_path, fetch.index)).wheels) == ["a", "c"]


def test_one_version_per_package_refetched_when_a_later_requirement_tightens_it(tmp_path):
    fetch = FakeIndex(tmp_path, {
        "a": {"1.0": ("b",)}, "c": {"1.0": ("d",)}, "d": {"1.0": ("b<2",)},
        "b": {"1.0": (), "2.0": ("e",)}, "e": {"1.0": ()},
    })
    res = resolve(["a", "c"], {}, PY312, fetch)
    assert res.wheels["b"].version == "1.0"
    assert sorted(res.wheels) == ["a", "b", "c", "d"]  # e, needed by b 2.0 only, is pruned
    assert files(tmp_path) == ["a-1.0", "b-1.0", "c-1.0", "d-1.0"]  # b 2.0 and e deleted


def test_a_too_old_package_on_the_target_is_carried_but_never_torch(tmp_path):
    fetch = FakeIndex(tmp_path, {"trl": {"1.0": ("transformers>=4.56",)}, "transformers": {"4.56": (), "5.0": ()}})
    res = resolve(["trl"], {"transformers": "4.40"}, PY312, fetch)
    assert res.wheels["transformers"].version == "5.0" and "transformers" not in res.provided
    assert res.upgrades == [{"name": "transformers", "have": "4.40", "required": ">=4.56", "by": "trl 1.0"}]
    fetch = FakeIndex(tmp_path, {"bnb": {"1.0": ("torch>=2.4",)}})
    with pytest.raises(WheelError, match=r"bnb 1.0 requires torch>=2.4, but the target has torch 2.1.*never carried"):
        resolve(["bnb"], {"torch": "2.1"}, PY312, fetch)
    # the CUDA runtime wheels are the target's, but nvidia-ml-py (NVML bindings) is not one of them
    have = parse_have(wheels.DEFAULT_HAVE)
    fetch = FakeIndex(tmp_path, {"x": {"1.0": ("nvidia-cublas-cu12", "nvidia-nccl-cu13", "nvidia-ml-py")},
                                 "nvidia-ml-py": {"13.0": ()}})
    res = resolve(["x"], have, PY312, fetch)
    assert sorted(res.wheels) == ["nvidia-ml-py", "x"] and set(res.provided) == {"nvidia-cublas-cu12", "nvidia-nccl-cu13"}


def test_have_lists_read_pip_freeze_output():
    have = parse_have(["# from the target", "torch==2.11.0", "Typing_Extensions==4.16.0", "-e git+https://x#egg=y",
                       "peft @ file:///tmp/peft.whl", "numpy", "nvidia-cu*", ""])
    assert have == {"torch": "2.11.0", "typing-extensions": "4.16.0", "peft": None, "numpy": None, "nvidia-cu*": None}


def test_target_platform_tags():
    tags = PY312.platforms()
    assert tags[0] == "manylinux_2_28_x86_64" and tags[-3:] == ["manylinux2014_x86_64", "manylinux2010_x86_64",
                                                                "manylinux1_x86_64"]
    assert "manylinux_2_24_x86_64" in tags and "manylinux_2_34_x86_64" not in tags
    assert Target("3.12", "2.39", "aarch64").platforms()[0] == "manylinux_2_39_aarch64"
    assert PY312.marker_env()["python_full_version"] == "3.12.0"
    with pytest.raises(WheelError, match="--glibc 3.1"):
        Target("3.12", "3.1").platforms()


def test_the_default_requirements_are_the_suites():
    import tomllib

    project = tomllib.loads((wheels.ROOT / "pyproject.toml").read_text())["project"]
    assert wheels.suite_requirements() == project["dependencies"]
    assert wheels.suite_requirements(["gpu"])[-2:] == project["optional-dependencies"]["gpu"]
    with pytest.raises(WheelError, match="unknown extra 'gpux'"):
        wheels.suite_requirements(["gpux"])


def test_download_writes_a_manifest_and_install_checks_it_then_installs_offline(tmp_path):
    dest = tmp_path / "whl"
    index = {"app": {"1.0": ("lib>=1", "torch")}, "lib": {"1.0": (), "1.1": ()}}
    m = wheels.download(dest, ["app"], {"torch": None}, PY312, fetch=FakeIndex(dest, index), log=lambda s: None)
    assert [(w["name"], w["version"]) for w in m["wheels"]] == [("app", "1.0"), ("lib", "1.1")]
    assert m["count"] == 2 and m["total_bytes"] == sum((dest / w["file"]).stat().st_size for w in m["wheels"])
    assert m["wheels"][1]["requested_by"] == ["app 1.0"] and json.loads((dest / "manifest.json").read_text()) == m
    with pytest.raises(WheelError, match="already holds 2 wheels"):
        wheels.download(dest, ["app"], {}, PY312, fetch=FakeIndex(dest, index))

    site = tmp_path / "site"
    cmd = wheels.install_command(dest, m, site)
    assert cmd[3:5] == ["install", "--no-index"] and "--no-deps" in cmd and cmd[-1].endswith(".whl")
    wheels.install(dest, site, log=lambda s: None)
    out = subprocess.run([sys.executable, "-c", "import app_mod, lib_mod; print(app_mod.VERSION, lib_mod.VERSION)"],
                         env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert out.stdout.split() == ["1.0", "1.1"], out.stderr
    assert "--find-links" in wheels.install_command(dest, m, None) and "lib==1.1" in wheels.install_command(dest, m, None)

    (dest / m["wheels"][0]["file"]).write_bytes(b"truncated")
    with pytest.raises(WheelError, match="app-1.0-py3-none-any.whl: size or sha256 differs"):
        wheels.verify(dest)
    (dest / m["wheels"][1]["file"]).unlink()
    with pytest.raises(WheelError, match="lib-1.1-py3-none-any.whl: missing"):
        wheels.verify(dest)


def test_cli_refuses_a_folder_without_manifest(tmp_path):
    out = subprocess.run([sys.executable, "-m", "suite", "wheels", "install", str(tmp_path)], cwd=wheels.ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "manifest.json not found" in out.stderr


@pytest.mark.skipif(os.environ.get("FTSUITE_NETWORK_TESTS") != "1", reason="asks PyPI; set FTSUITE_NETWORK_TESTS=1")
def test_real_download_for_a_cp312_gpu_machine(tmp_path):
    m = wheels.download(tmp_path, wheels.suite_requirements(), parse_have(wheels.DEFAULT_HAVE), PY312, log=print)
    names = [w["name"] for w in m["wheels"]]
    assert {"trl", "bitsandbytes", "datasets", "pytest-benchmark", "nvidia-ml-py"} <= set(names)
    assert not {"torch", "transformers", "peft", "accelerate", "numpy", "triton"} & set(names)
    assert not [n for n in names if n.startswith("nvidia-cu")] and len(names) == len(set(names))
    assert all("cp312" in w["file"] or "py3" in w["file"] or "abi3" in w["file"] or "py2" in w["file"]
               for w in m["wheels"])
    wheels.verify(tmp_path)
    print(f"{m['count']} wheels, {m['total_bytes'] / 2**20:.1f} MiB in {m['seconds']} s")


def test_a_second_install_into_the_same_target_replaces_other_versions(tmp_path):
    """pip --target --upgrade leaves the old dist-info behind; the suite removes it by its RECORD."""
    site = tmp_path / "site"
    for version in ("1.16", "1.15"):  # e.g. unsloth's set carries an older trl after the suite's set
        folder = tmp_path / f"w{version}"
        wheels.download(folder, ["lib"], {}, PY312, fetch=FakeIndex(folder, {"lib": {version: ()}}), log=lambda s: None)
        wheels.install(folder, site, log=lambda s: None)
    assert sorted(p.name for p in site.glob("*.dist-info")) == ["lib-1.15.dist-info"]
    out = subprocess.run([sys.executable, "-c", "import importlib.metadata as m, lib_mod; print(m.version('lib'), "
                          "lib_mod.VERSION)"], env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert out.stdout.split() == ["1.15", "1.15"], out.stderr
