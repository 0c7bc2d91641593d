"""The GitHub workflows: valid against GitHub's workflow schema, and every suite command and pytest
option they run exists here (a workflow that names a missing option fails only at 2 a.m.)."""
from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from suite.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean; GitHub (YAML 1.2) does not
        doc["on"] = doc.pop(True)
    return doc


@functools.lru_cache(maxsize=1)
def workflow_schema() -> dict:
    """schemastore's github-workflow.json, as vendored by check-jsonschema (no network)."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "github-workflows.json").read_text())


def run_lines(doc: dict) -> list[str]:
    """Every command of every `run:` block, continuation lines joined, `${{ }}` expressions as X."""
    out = []
    for job in doc["jobs"].values():
        for step in job.get("steps", []):
            script = re.sub(r"\$\{\{.*?\}\}", "X", step.get("run", ""))
            out += [ln.strip() for ln in script.replace("\\\n", " ").splitlines() if ln.strip()]
    return out


def invocations(doc: dict, module: str) -> list[list[str]]:
    """Arguments after `python -m MODULE` (python or python3) in the run blocks."""
    found = []
    for line in run_lines(doc):
        for match in re.finditer(rf"\bpython3? -m {re.escape(module)}\b(.*?)(?:\|\||&&|;|\||$)", line):
            found.append(shlex.split(match.group(1), comments=True))
    return found


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@functools.lru_cache(maxsize=1)
def pytest_options() -> set[str]:
    """Long options pytest accepts in this checkout (its own, plugins', the suite's)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out.stdout))


def long_options(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--") and len(a) > 2]


def parser_options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def test_there_are_a_ci_and_a_nightly_workflow():
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "nightly-gpu.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid_against_githubs_schema(path):
    errors = sorted(jsonschema.Draft7Validator(workflow_schema()).iter_errors(load(path)), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_mistakes():
    doc = load(ROOT / ".github" / "workflows" / "nightly-gpu.yml")
    doc["jobs"]["gpu"]["stepz"] = doc["jobs"]["gpu"].pop("steps")
    doc["on"]["schedule"] = [{"crn": "0 0 * * *"}]
    assert len(list(jsonschema.Draft7Validator(workflow_schema()).iter_errors(doc))) >= 2


def _suite_calls() -> list[tuple[str, list[str]]]:
    return [(p.name, args) for p in WORKFLOWS for args in invocations(load(p), "suite")]


@pytest.mark.parametrize("workflow, args", _suite_calls(), ids=lambda v: v if isinstance(v, str) else " ".join(v[:1]))
def test_suite_subcommands_and_their_options_exist(workflow, args):
    known = subcommands()
    command = args[0]
    assert command in known, f"{workflow}: python -m suite {command}: no such subcommand ({', '.join(known)})"
    if command == "run":  # everything after run goes to pytest
        missing = set(long_options(args[1:])) - pytest_options()
    else:
        used = set(long_options(args[1:])) | ({"--baseline"} if command == "report" else set())  # set in a bash array
        missing = used - parser_options(known[command])
    assert not missing, f"{workflow}: python -m suite {command}: unknown options {sorted(missing)}"


def _pytest_calls() -> list[tuple[str, list[str]]]:
    return [(p.name, args) for p in WORKFLOWS for args in invocations(load(p), "pytest")]


@pytest.mark.slow
@pytest.mark.parametrize("workflow, args", _pytest_calls(), ids=lambda v: v if isinstance(v, str) else "pytest")
def test_pytest_options_used_by_workflows_are_registered(workflow, args):
    used = set(long_options(args))
    missing = used - pytest_options()
    assert not missing, f"{workflow}: pytest options not registered here: {sorted(missing)}"


def test_the_nightly_runs_the_gpu_matrix_and_gates_on_the_report():
    doc = load(ROOT / ".github" / "workflows" / "nightly-gpu.yml")
    assert doc["on"]["schedule"][0]["cron"] and "workflow_dispatch" in doc["on"]
    job = doc["jobs"]["gpu"]
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert job["strategy"]["matrix"]["stack"] == ["released", "main"]
    text = "\n".join(run_lines(doc))
    assert "git+https://github.com/huggingface/trl" in text and "git+https://github.com/huggingface/peft" in text
    [call] = invocations(doc, "pytest")
    assert call[:2] == ["-m", "${MARKERS}"] and doc["env"]["MARKERS"].endswith("'gpu or tiny' }}")
    assert {"--benchmark", "--benchmark-json", "--run-id", "--shard"} <= set(call)
    [report] = invocations(doc, "suite report")
    assert "--fail-on" in report and "worse,newly-failing,lost,unreadable,unfinished" in report and "--out" in report
    assert "--baseline \"${BASELINE}\"" in text and "GITHUB_STEP_SUMMARY" in text and "exit \"${gate}\"" in text
    upload = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert len(upload) == 1 and upload[0]["if"] == "${{ always() }}"


def test_ci_runs_the_readme_test_command_on_python_311():
    doc = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert {"push", "pull_request"} <= set(doc["on"])
    steps = doc["jobs"]["test"]["steps"]
    assert any(s.get("with", {}).get("python-version") == "3.11" for s in steps)
    assert "bash .ci/run" in run_lines(doc)
    ci_script = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "python -m pytest\n" in readme and re.search(r"^python3? -m pytest\b", ci_script, re.M)


def test_the_nightly_has_a_canary_leg_on_the_control_stack():
    doc = load(ROOT / ".github" / "workflows" / "nightly-gpu.yml")
    job = doc["jobs"]["canary"]
    text = "\n".join(s.get("run", "") for s in job["steps"])
    assert 'pip install -c requirements/control.txt -e ".[deepspeed]"' in text and "python -m suite lock check" in text
    [canary] = invocations({"jobs": {"canary": job}}, "suite canary")
    assert canary[:2] == ["-m", "${MARKERS}"] and "--out" in canary
    assert "GITHUB_STEP_SUMMARY" in text and "exit \"${gate}\"" in text


def test_the_nightly_appends_the_history_of_its_last_nights():
    doc = load(ROOT / ".github" / "workflows" / "nightly-gpu.yml")
    assert doc["permissions"]["actions"] == "read"
    steps = doc["jobs"]["night"]["steps"]  # the merged night's history (merge-shards)
    [step] = [s for s in steps if "suite history" in s.get("run", "")]
    assert "gh run download" in step["run"] and "GITHUB_STEP_SUMMARY" in step["run"]
    assert step["env"]["GH_TOKEN"] == "${{ github.token }}" and int(step["env"]["NIGHTS"]) >= 7
    names = [s.get("name", "") for s in steps]
    assert names.index(step["name"]) < next(i for i, n in enumerate(names) if n.startswith("upload"))
    for job in doc["jobs"].values():  # every leg that installs the suite installs Otava too
        text = "\n".join(s.get("run", "") for s in job["steps"])
        if "-e ." in text:
            assert "pip install --no-deps -r requirements/no-deps.txt" in text
