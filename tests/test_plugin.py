"""The pytest wiring as a user meets it: markers select cases, bad case files stop collection."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import write_cases

ROOT = Path(__file__).resolve().parent.parent


def pytest_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def collected(*args: str) -> list[str]:
    out = pytest_run("--collect-only", "-q", "tests/test_matrix.py", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line.split("[", 1)[1].rstrip("]") for line in out.stdout.splitlines() if "test_case[" in line]


def test_markers_select_the_matrix():
    qlora = collected("-m", "qlora")
    assert any(i.startswith("tiny-") for i in qlora) and any("7b" in i for i in qlora)
    assert all("/qlora/" in i for i in qlora)
    for marker in ("unsloth", "flash_attn", "packing", "neftune", "full", "lora"):
        assert collected("-m", marker), marker
    both = collected("-m", "lora and packing")
    assert both and all("/lora/" in i and "packing" in i for i in both)
    assert not [i for i in collected("-m", "tiny") if "7b" in i]


def test_unknown_marker_is_refused():
    """pytest 9 reads strict markers from the strict_markers ini key, not from addopts alone."""
    bad = ROOT / "tests" / "_tmp_bad_marker_test.py"
    bad.write_text("import pytest\n\n@pytest.mark.qlorra\ndef test_x():\n    pass\n")
    try:
        out = pytest_run("--collect-only", "-q", str(bad))
    finally:
        bad.unlink()
    assert out.returncode != 0 and "'qlorra' not found in `markers`" in out.stdout + out.stderr


def test_a_malformed_case_file_stops_collection_naming_file_and_field(tmp_path):
    d = write_cases(tmp_path, "matrix:\n  - {models: [tiny-llama], methods: [lora], features: [packinng]}\n")
    out = pytest_run("--collect-only", "-q", "tests/test_matrix.py", "--cases-dir", str(d))
    assert out.returncode == 4
    text = out.stdout + out.stderr
    assert "matrix.yaml: matrix[0].features[0]: unknown feature 'packinng'" in text
    assert "Traceback" not in text and "ERROR: invalid case file" in text


def test_benchmark_option_switches_to_long_runs_and_cli_lists_cases():
    out = subprocess.run([sys.executable, "-m", "suite", "cases"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "tiny-llama/qlora/base" in out.stdout
    assert collected("--benchmark", "-m", "tiny and qlora")
    bad = subprocess.run([sys.executable, "-m", "suite", "cases", "--cases-dir", "/nonexistent"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "case directory not found" in bad.stderr
