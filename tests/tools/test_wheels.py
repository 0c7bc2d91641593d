"""The wheel carrier: uv's resolution cut where the target's packages begin, pip's hash-checked
download and offline install, the lock, the --target clean-up.

Everything here runs offline, uv and pip for real against a folder of wheels built in the test
(`--no-index --find-links`), except test_real_download_for_a_cp312_gpu_machine (set
FTSUITE_NETWORK_TESTS=1; it asks PyPI).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from suite.tools import lock as control_lock
from suite.tools import wheels
from suite.tools.wheels import Target, WheelError, parse_have

pytestmark = pytest.mark.slow  # uv and pip subprocesses (0.6 to 3.5 s each, 2026-12-05)

PY312 = Target("3.12", "2.28", "x86_64")
GPU_LOCK = wheels.ROOT / "requirements" / "gpu.txt"
GPU_IN = wheels.ROOT / "requirements" / "gpu.in"
IMAGE_HAVE = wheels.ROOT / "benchmarks" / "h200-have.txt"


def make_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = (), body: str = "",
               module: str | None = None) -> Path:
    """A minimal valid pure-Python wheel holding one module, `<name>_mod` (or `module`)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
        name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{module or name.replace('-', '_') + '_mod'}.py", f"VERSION = {version!r}\n{body}")
        zf.writestr(f"{dist}.dist-info/METADATA", meta)
        zf.writestr(f"{dist}.dist-info/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def index(folder: Path, packages: dict[str, dict[str, tuple[str, ...]]]) -> list[str]:
    """A package index of made wheels; the uv and pip arguments that use it and nothing else."""
    for name, versions in packages.items():
        for version, requires in versions.items():
            make_wheel(folder, name, version, requires)
    return ["--no-index", "--find-links", str(folder)]


def carried(tmp_path: Path, needs: list[str], have: dict, packages: dict, target: Target = PY312, **kw) -> dict:
    """Download needs for target from an index of packages; the manifest's name -> version."""
    dest = tmp_path / "whl"
    m = wheels.download(dest, needs, have, target, index_args=index(tmp_path / "index", packages), log=lambda s: None,
                        **kw)
    return {w["name"]: w["version"] for w in m["wheels"]}


def files(folder: Path) -> list[str]:
    return sorted(p.name.split("-py3")[0] for p in folder.glob("*.whl"))


def test_the_target_keeps_its_own_packages_and_markers_are_the_targets(tmp_path):
    packages = {
        "trl": {"1.0": ("torch>=2", "datasets", "numpy", 'tomli; python_version < "3.11"',
                        'pywin; sys_platform == "win32"')},
        "datasets": {"1.0": ("numpy", "pyarrow>=20", 'pytest; extra == "test"')},
        "pyarrow": {"19.0": (), "21.0": ("numpy",)},
        "tomli": {"2.0": ()}, "torch": {"2.1": ("filelock",)}, "filelock": {"3.0": ()}, "numpy": {"2.0": (), "2.1": ()},
    }
    got = carried(tmp_path, ["trl>=1"], {"torch": None, "numpy": "2.0"}, packages)
    assert got == {"trl": "1.0", "datasets": "1.0", "pyarrow": "21.0"}  # not torch, nor filelock (torch's), nor numpy
    m = json.loads((tmp_path / "whl" / "manifest.json").read_text())
    assert m["provided"] == {"filelock": None, "numpy": "2.0", "torch": None}
    assert m["unknown_versions"] == {"torch": "2.1"}  # trl needs it; the have list gives no version
    assert files(tmp_path / "whl") == ["datasets-1.0", "pyarrow-21.0", "trl-1.0"]
    py310 = tmp_path / "py310"
    assert "tomli" in carried(py310, ["trl"], {"torch": None, "numpy": None}, packages, Target("3.10"))


def test_extras_pull_their_requirements(tmp_path):
    packages = {"a": {"1.0": ('b; extra == "x"', 'c; extra == "y"')}, "b": {"1.0": ()}, "c": {"1.0": ()}}
    assert sorted(carried(tmp_path / "1", ["a[x]"], {}, packages)) == ["a", "b"]
    assert sorted(carried(tmp_path / "2", ["a", "a[y]"], {}, packages)) == ["a", "c"]


def test_one_version_per_package_when_a_later_requirement_tightens_it(tmp_path):
    packages = {"a": {"1.0": ("b",)}, "c": {"1.0": ("d",)}, "d": {"1.0": ("b<2",)},
                "b": {"1.0": (), "2.0": ("e",)}, "e": {"1.0": ()}}
    assert carried(tmp_path, ["a", "c"], {}, packages) == {"a": "1.0", "b": "1.0", "c": "1.0", "d": "1.0"}
    assert files(tmp_path / "whl") == ["a-1.0", "b-1.0", "c-1.0", "d-1.0"]  # b 2.0 and e (b 2.0's) never fetched


def test_a_too_old_package_on_the_target_is_refused_unless_replaced_and_never_torch(tmp_path):
    packages = {"trl": {"1.0": ("transformers>=4.56",)}, "transformers": {"4.40": (), "4.56": (), "5.0": ()},
                "bnb": {"1.0": ("torch>=2.4",)}, "torch": {"2.1": (), "2.4": ()},
                "x": {"1.0": ("nvidia-cublas-cu12", "nvidia-nccl-cu13", "nvidia-ml-py")},
                "nvidia-ml-py": {"13.0": ()}, "nvidia-cublas-cu12": {"12.0": ()}, "nvidia-nccl-cu13": {"2.0": ()}}
    with pytest.raises(WheelError, match=r"(?s)no set of versions.*transformers==4\.40.*--replace NAME"):
        carried(tmp_path / "1", ["trl"], {"transformers": "4.40"}, packages)
    got = carried(tmp_path / "2", ["trl"], {"transformers": "4.40"}, packages, replace=["transformers"])
    assert got == {"trl": "1.0", "transformers": "5.0"}
    m = json.loads((tmp_path / "2" / "whl" / "manifest.json").read_text())
    assert m["upgrades"] == [{"name": "transformers", "have": "4.40", "carried": "5.0"}]
    with pytest.raises(WheelError, match=r"(?s)no set of versions.*torch==2\.1"):
        carried(tmp_path / "3", ["bnb"], {"torch": "2.1"}, packages)
    with pytest.raises(WheelError, match="--replace torch: torch, triton and the CUDA wheels are never carried"):
        carried(tmp_path / "4", ["bnb"], {"torch": "2.1"}, packages, replace=["torch"])
    with pytest.raises(WheelError, match="the carried set would hold torch, which replaces the target's CUDA build"):
        carried(tmp_path / "5", ["bnb"], {"numpy": None}, packages)
    # the CUDA runtime wheels are the target's, but nvidia-ml-py (NVML bindings) is not one of them
    got = carried(tmp_path / "6", ["x"], parse_have(wheels.DEFAULT_HAVE), packages)
    assert got == {"nvidia-ml-py": "13.0", "x": "1.0"}


def test_have_lists_read_pip_freeze_output_and_manifests(tmp_path):
    have = parse_have(["# from the target", "torch==2.11.0", "Typing_Extensions==4.16.0", "-e git+https://x#egg=y",
                       "peft @ file:///tmp/peft.whl", "numpy", "nvidia-cu*", ""])
    assert have == {"torch": "2.11.0", "typing-extensions": "4.16.0", "peft": None, "numpy": None, "nvidia-cu*": None}
    assert wheels.constraints(have, replace=["Typing_Extensions"]) == ["torch==2.11.0"]
    carried(tmp_path, ["a"], {}, {"a": {"1.0": ()}})
    assert wheels.read_have(tmp_path / "whl" / "manifest.json") == {"a": "1.0"}
    (tmp_path / "other.json").write_text('{"kind": "ftsuite.run"}')
    with pytest.raises(WheelError, match="not a wheels manifest"):
        wheels.read_have(tmp_path / "other.json")


def test_target_platforms_for_uv_and_pip():
    tags = PY312.platforms()
    assert tags[0] == "manylinux_2_28_x86_64" and tags[-3:] == ["manylinux2014_x86_64", "manylinux2010_x86_64",
                                                                "manylinux1_x86_64"]
    assert "manylinux_2_24_x86_64" in tags and "manylinux_2_34_x86_64" not in tags
    assert PY312.uv_platform() == "x86_64-manylinux_2_28"
    assert Target("3.12", "2.30").uv_platform() == "x86_64-manylinux_2_28"  # uv knows 2.28 and 2.31, not 2.30
    assert Target("3.12", "2.39", "aarch64").uv_platform() == "aarch64-manylinux_2_39"
    for bad in ("3.1", "2.12", "x"):
        with pytest.raises(WheelError, match=f"--glibc {bad}: expected 2.N with N >= 17"):
            Target("3.12", bad).uv_platform()


UV_OUTPUT = """\
bitsandbytes==0.50.2 \\
    --hash=sha256:aa \\
    --hash=sha256:bb
    # via ftsuite (pyproject.toml)
fsspec==2026.9.0 \\
    --hash=sha256:cc
    # via
    #   datasets
    #   torch
datasets==5.2.0 \\
    --hash=sha256:dd
    # via
    #   -r requirements/gpu.in
    #   trl
pydantic==2.14.4
    # via typer
huggingface-hub==1.33.0
    # via
    #   datasets
    #   transformers
torch==2.11.0
    # via
    #   -c target.txt
    #   bitsandbytes
typer==0.29.2
    # via transformers
transformers==5.17.0
    # via
    #   -c target.txt
    #   ftsuite (pyproject.toml)
"""


def test_uv_output_is_read_and_cut_where_the_target_begins():
    pins = wheels.parse_compiled(UV_OUTPUT)
    assert pins["bitsandbytes"].hashes == ["sha256:aa", "sha256:bb"]
    assert pins["datasets"].via == ["-r requirements/gpu.in", "trl"]
    have = {"torch": "2.11.0", "transformers": "5.17.0", "typer": None, "fsspec": None}
    # requested: bitsandbytes, datasets (pyproject, -r) and transformers; pydantic is typer's, the target's business;
    # the target's transformers requires huggingface-hub: the target has it, though its list does not say so
    assert wheels.cut(pins, have) == ["bitsandbytes", "datasets"]
    without = {n: v for n, v in have.items() if n != "transformers"}
    assert wheels.cut(pins, without) == ["bitsandbytes", "datasets", "huggingface-hub", "transformers"]
    assert wheels.cut(pins, have, replace=["fsspec"]) == ["bitsandbytes", "datasets", "fsspec"]
    with pytest.raises(WheelError, match="uv's output names no requested package"):
        wheels.cut(wheels.parse_compiled("trl==1.0\n"), {})
    with pytest.raises(WheelError, match="uv's output has a line that is no pin"):
        wheels.parse_compiled("trl>=1\n")


def test_download_writes_a_manifest_and_install_checks_it_then_installs_offline(tmp_path):
    dest = tmp_path / "whl"
    idx = index(tmp_path / "index", {"app": {"1.0": ("lib>=1", "torch")}, "lib": {"1.0": (), "1.1": ()},
                                     "torch": {"2.1": ()}})
    m = wheels.download(dest, ["app"], {"torch": None}, PY312, index_args=idx, log=lambda s: None)
    assert [(w["name"], w["version"]) for w in m["wheels"]] == [("app", "1.0"), ("lib", "1.1")]
    assert m["count"] == 2 and m["total_bytes"] == sum((dest / w["file"]).stat().st_size for w in m["wheels"])
    assert m["wheels"][1]["requested_by"] == ["app"] and json.loads((dest / "manifest.json").read_text()) == m
    assert m["resolver"].startswith("uv ") and m["target"]["uv_platform"] == "x86_64-manylinux_2_28"
    lib_line = f"lib==1.1 --hash=sha256:{m['wheels'][1]['sha256']}"
    assert (dest / "requirements.txt").read_text().splitlines()[1] == lib_line
    with pytest.raises(WheelError, match="already holds 2 wheels"):
        wheels.download(dest, ["app"], {}, PY312, index_args=idx)

    site = tmp_path / "site"
    wheels.install(dest, site, log=lambda s: None)
    out = subprocess.run([sys.executable, "-c", "import app_mod, lib_mod; print(app_mod.VERSION, lib_mod.VERSION)"],
                         env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert out.stdout.split() == ["1.0", "1.1"], out.stderr
    into_env = wheels.install_command(dest, None)
    assert "--find-links" in into_env and "--require-hashes" in into_env and "--target" not in into_env
    assert "--no-deps" not in into_env  # into an environment pip checks app's requirements against it

    good = (dest / m["wheels"][0]["file"]).read_bytes()
    (dest / m["wheels"][0]["file"]).write_bytes(b"truncated")
    with pytest.raises(WheelError, match=r"(?s)DO NOT MATCH THE HASHES.*app-1\.0-py3-none-any\.whl"):
        wheels.install(dest, tmp_path / "site2", log=lambda s: None)
    (dest / m["wheels"][0]["file"]).write_bytes(good)
    (dest / m["wheels"][1]["file"]).unlink()
    with pytest.raises(WheelError, match="lib==1.1"):
        wheels.install(dest, tmp_path / "site3", log=lambda s: None)


def test_the_lock_holds_the_whole_set_and_downloads_the_same_files_again(tmp_path):
    packages = {"app": {"1.0": ("lib", "torch")}, "lib": {"1.1": ()}, "torch": {"2.1": ("dep",)}, "dep": {"1.0": ()}}
    lock = tmp_path / "gpu.txt"
    first = carried(tmp_path / "1", ["app"], {"torch": "2.1"}, packages, lock=lock)
    text = lock.read_text()
    assert "app==1.0  # carried: app-1.0-py3-none-any.whl sha256:" in text and "torch==2.1  # target\n" in text
    assert "dep==1.0  # target, required by its packages\n" in text
    assert control_lock.read_pins(lock) == {"app": "1.0", "dep": "1.0", "lib": "1.1", "torch": "2.1"}
    again = tmp_path / "2" / "whl"
    m = wheels.download(again, [], {}, PY312, index_args=index(tmp_path / "1" / "index", {}), from_lock=lock,
                        log=lambda s: None)
    assert {w["name"]: w["version"] for w in m["wheels"]} == first
    before = wheels.read_manifest(tmp_path / "1" / "whl")["wheels"]
    assert [w["sha256"] for w in m["wheels"]] == [w["sha256"] for w in before]
    # a file on the index that is no longer the locked one: pip's hash check refuses the download
    make_wheel(tmp_path / "1" / "index", "lib", "1.1", body="CHANGED = True\n")
    with pytest.raises(WheelError, match=r"(?s)pip download failed.*DO NOT MATCH THE HASHES"):
        wheels.download(tmp_path / "3", [], {}, PY312, index_args=index(tmp_path / "1" / "index", {}), from_lock=lock)
    with pytest.raises(WheelError, match="no `name==version  # carried"):
        wheels.read_lock(wheels.ROOT / "requirements" / "control.in")


def test_the_committed_gpu_lock_pins_the_images_versions_and_carries_the_gpu_stack():
    pins = control_lock.read_pins(GPU_LOCK)
    image = wheels.read_have(IMAGE_HAVE)
    assert {n: v for n, v in image.items() if v} == {n: pins[n] for n, v in image.items() if v}
    carried_ = wheels.read_lock(GPU_LOCK)
    requested = [wheels.canonical(ln.split("#")[0].strip().split("=")[0].split("<")[0].split(">")[0])
                 for ln in GPU_IN.read_text().splitlines() if ln.split("#")[0].strip()]
    assert set(requested) <= set(carried_) and {"trl", "datasets", "bitsandbytes"} <= set(carried_)
    assert not [n for n in carried_ if wheels.on_target(n, image)]
    assert pins["torch"] == "2.11.0" and pins["transformers"] == "5.17.0"


def test_cli_refuses_a_folder_without_manifest(tmp_path):
    out = subprocess.run([sys.executable, "-m", "suite", "wheels", "install", str(tmp_path)], cwd=wheels.ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "manifest.json not found" in out.stderr


@pytest.mark.skipif(os.environ.get("FTSUITE_NETWORK_TESTS") != "1", reason="asks PyPI; set FTSUITE_NETWORK_TESTS=1")
def test_real_download_for_a_cp312_gpu_machine(tmp_path):
    m = wheels.download(tmp_path, [str(GPU_IN)], wheels.read_have(IMAGE_HAVE), PY312, log=print)
    names = [w["name"] for w in m["wheels"]]
    assert {"trl", "bitsandbytes", "datasets", "liger-kernel"} <= set(names)
    assert not {"torch", "transformers", "peft", "accelerate", "numpy", "triton", "pyarrow"} & set(names)
    assert all("cp312" in w["file"] or "py3" in w["file"] or "abi3" in w["file"] for w in m["wheels"])
    assert m["total_bytes"] < 56 * 2**20  # the device call carries 64 MiB with the repository
    print(f"{m['count']} wheels, {m['total_bytes'] / 2**20:.1f} MiB in {m['seconds']} s")


def test_a_second_install_into_the_same_target_replaces_other_versions(tmp_path):
    """pip --target --upgrade leaves the old dist-info behind; the suite removes it by its RECORD."""
    site = tmp_path / "site"
    for version in ("1.16", "1.15"):  # e.g. unsloth's set carries an older trl after the suite's set
        folder = tmp_path / f"w{version}"
        idx = index(tmp_path / f"i{version}", {"lib": {version: ()}})
        wheels.download(folder, ["lib"], {}, PY312, index_args=idx, log=lambda s: None)
        wheels.install(folder, site, log=lambda s: None)
    assert sorted(p.name for p in site.glob("*.dist-info")) == ["lib-1.15.dist-info"]
    code = "import importlib.metadata as m, lib_mod; print(m.version('lib'), lib_mod.VERSION)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True)
    assert out.stdout.split() == ["1.15", "1.15"], out.stderr
