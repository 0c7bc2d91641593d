"""Small builders shared by the unit tests."""
from __future__ import annotations

import textwrap
from pathlib import Path

BASE_MODELS = """
models:
  tiny-llama: {size: tiny, arch: llama}
  tiny-qwen2: {size: tiny, arch: qwen2}
  big: {size: 7b, hub_id: org/big-7b, env: FTSUITE_TEST_BIG}
"""


def write_cases(directory: Path, matrix: str, models: str = BASE_MODELS, defaults: str = "") -> Path:
    """A case directory with a models file, an optional defaults file and one matrix file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "models.yaml").write_text(textwrap.dedent(models))
    if defaults:
        (directory / "_base.yaml").write_text(textwrap.dedent(defaults))
    (directory / "matrix.yaml").write_text(textwrap.dedent(matrix))
    return directory


def fault_runs(tmp: Path, matrix: str, faults: tuple[str, ...], models: str = BASE_MODELS) -> dict:
    """Real runs of the matrix's first case, one per known fault (suite/train/inject.py; "" runs it
    clean), through one RunSession without baselines: {fault, or "clean": its CaseRecord}."""
    from suite.cases import load_cases
    from suite.run.session import RunSession
    from suite.train import inject

    case = load_cases(write_cases(tmp / "cases", matrix, models))[0]
    session = RunSession(tmp / "results", tmp.name, baselines=None)
    out = {}
    for fault in faults:
        session.child_env = {inject.ENV: fault}
        out[fault or "clean"] = session.run_case(case).record
    session.finish()
    return out


def check_outcomes(record) -> dict[str, bool]:
    """A record's checks: name -> passed."""
    return {c["name"]: c["passed"] for c in record.checks}


def failed_messages(record) -> list[str]:
    return [c["message"] for c in record.checks if not c["passed"]]


def assert_fails_alone(record, fault: str, failing: str | tuple[str, ...], untouched: tuple[str, ...]) -> None:
    """A run under one known fault: the fault was injected, the case failed, every check in `failing` failed and
    every check in `untouched` passed (a fault is seen by the checks aimed at it, and by those only)."""
    failing = (failing,) if isinstance(failing, str) else failing
    assert record.resolved["injected"] == {fault: 1.0}
    assert record.status == "failed"
    checks = check_outcomes(record)
    assert not any(checks[name] for name in failing), [c["message"] for c in record.checks if c["name"] in failing]
    assert all(checks[name] for name in untouched), failed_messages(record)
