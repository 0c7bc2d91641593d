"""Upgrade check, deeper, end to end and offline: a local git repository of trl (made here from the
installed trl's own files; nothing is downloaded but setuptools for the build) with a known bad
commit that scales SFTTrainer's loss by 1.05. An upgrade check onto that commit fails its gate
naming the broken invariant (`logged_loss`), and a commit bisect names the bad commit."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from suite.paths import ROOT

# one worker for both tests: they share the repository and the environments made from it
# slow: a local git repository of trl, environments and real runs
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("trl-git")]
CASE = "tiny-llama/lora/base and not messages and not prompt and not conv"
BAD_SUBJECT = "sft: scale the loss by 1.05 (the bad commit)"
SCALE = '''

_original_compute_loss = SFTTrainer.compute_loss


def _scaled_compute_loss(self, *args, **kwargs):
    out = _original_compute_loss(self, *args, **kwargs)
    return (out[0] * 1.05, *out[1:]) if isinstance(out, tuple) else out * 1.05


SFTTrainer.compute_loss = _scaled_compute_loss
'''


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def _commit(repo: Path, n: int, subject: str) -> str:
    (repo / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "trl"
        version = "1.16.0+bisect.{n}"
        dependencies = []

        [tool.setuptools.packages.find]
        include = ["trl*"]

        [tool.setuptools.package-data]
        "*" = ["*.jinja", "*.yaml", "*.md", "py.typed"]
        """))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", subject)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def trl_repo(tmp_path_factory) -> tuple[Path, list[str]]:
    import trl

    repo = tmp_path_factory.mktemp("trl-git") / "trl"
    shutil.copytree(Path(trl.__file__).parent, repo / "trl", ignore=shutil.ignore_patterns("__pycache__"))
    _git(repo, "init", "-q")
    shas = [_commit(repo, 0, "trl as installed (good)")]
    (repo / "NOTES.md").write_text("a neutral change\n")
    shas.append(_commit(repo, 1, "docs: a note"))
    sft = repo / "trl" / "trainer" / "sft_trainer.py"
    sft.write_text(sft.read_text() + SCALE)
    shas.append(_commit(repo, 2, BAD_SUBJECT))
    (repo / "NOTES.md").write_text("another neutral change\n")
    shas.append(_commit(repo, 3, "docs: another note"))
    return repo, shas


@pytest.fixture(scope="module")
def isolated(tmp_path_factory) -> dict:
    """A cache of its own (derived environments, tiny models), results apart from the checkout's."""
    tmp = tmp_path_factory.mktemp("upgrade-deep")
    return {**os.environ, "FTSUITE_CACHE": str(tmp / "cache"), "FTSUITE_RESULTS": str(tmp / "results")}


def _suite(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=1500)


def test_an_upgrade_onto_a_broken_invariant_fails_the_gate_naming_the_relation(trl_repo, isolated, tmp_path):
    repo, shas = trl_repo
    out = _suite(isolated, "upgrade-check", "--baseline", f"git+file://{repo}@{shas[0]}",
                 "--candidate", f"git+file://{repo}@{shas[2]}", "-k", CASE, "--invariants-k",
                 "logged_loss and not can_fail", "--out", str(tmp_path / "report"))
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    report = (tmp_path / "report" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| newly failing | `invariants/logged_loss`"))
    assert "holds → broken" in row and "hand-computed cross-entropy" in row
    assert "### Invariants" in report and "### Checkpoint compatibility" in report
    # the adapter trained under the good commit loads under the bad one: saving is not what broke
    # ... by every route that applies to it (docs/checks.md), each a row
    for route in ("peft_model", "transformers_adapter_dir", "load_adapter", "auto_peft", "merged"):
        assert f"| `tiny-llama/lora/base` | {route} | baseline | candidate | loads, same outputs |" in report, route
    assert "| `tiny-llama/lora/base` | full_model | baseline | candidate | not applicable |" in report
    assert "gate fails" in out.stdout and "newly failing" in out.stdout


def test_a_commit_bisect_names_the_bad_commit(trl_repo, isolated):
    repo, shas = trl_repo
    # The bad commit breaks correctness (the golden curve: newly failing), so the bisect hunts that, not "worse":
    # with one run a commit, a docs-only commit's peak_rss_delta_gib was once judged worse in CI (0.051 -> 0.081
    # GiB, the process's start RSS 0.405 -> 0.384 GiB, its peak 0.456 -> 0.465 GiB; avx512-bf16, 2 workers)
    out = _suite(isolated, "bisect", "--package", "trl", "--repo", str(repo), "--good", shas[0], "--bad", shas[3],
                 "-k", CASE, "--no-invariants", "--fail-on", "errored,newly-failing,lost,unreadable,unfinished")
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"first bad commit: trl {shas[2][:10]} {BAD_SUBJECT} (last good: {shas[1][:10]} docs: a note)" in out.stdout, \
        out.stdout
    assert "4 commits of trl" in out.stdout and "environment" in out.stdout and "cases" in out.stdout
