"""Wrong input is a usage error, early: exit 2 for the suite's own commands, pytest's 4 under pytest, before
any environment is built or any case runs (docs/exit-codes.md). Each test is a wrong input a user met
(issue 34) and what it got before: an INTERNALERROR, two environments built, a traceback after the report,
a case silently dropped."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suite import cli, options
from suite.cases import load_cases, markers
from suite.errors import CaseError
from suite.judge import budgets
from suite.matrix.selection import Selection, SelectionError, choose
from suite.records import runs
from tests.helpers import write_cases

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "runs"


def suite_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FTSUITE_RUN_ID"}
    return subprocess.run([sys.executable, "-m", "suite", "run", "-p", "no:cacheprovider", "--results-dir",
                           str(tmp_path / "results"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


# -- pytest's own usage errors, before pytest-xdist starts its workers ----------------------------------------

@pytest.mark.slow
def test_a_marker_typo_under_xdist_is_pytests_usage_error_not_an_internalerror(tmp_path):
    """Was: a 40-line INTERNALERROR from the xdist controller, exit 3 (a worker raised pytest's UsageError)."""
    out = suite_run(tmp_path, "-n", "2", "-m", "tiny and nosuchmarker")
    text = out.stdout + out.stderr
    assert out.returncode == 4, text[-3000:]
    assert "Unknown marker(s) in '-m' expression: nosuchmarker" in text and "INTERNALERROR" not in text
    assert "created: 2/2 workers" not in text and not (tmp_path / "results").exists()
    out = suite_run(tmp_path, "-n", "2", "-k", "tiny and")  # a -k pytest cannot parse: the same
    assert out.returncode == 4 and "Wrong expression passed to '-k'" in out.stdout + out.stderr
    assert "INTERNALERROR" not in out.stdout + out.stderr


@pytest.mark.slow
def test_a_run_id_that_is_no_folder_name_is_refused_before_any_case(tmp_path):
    """Was: accepted, then every case failed with a traceback when it wrote its record."""
    out = suite_run(tmp_path, "-n", "0", "-k", "tiny-llama/lora/base]", "--run-id", "../../x")
    text = out.stdout + out.stderr
    assert out.returncode == 4, text[-3000:]
    assert "--run-id: run id '../../x': use letters, digits" in text and "Traceback" not in text
    assert not (tmp_path / "results").exists() and not (tmp_path / "x").exists()


# -- upgrade-check, bisect and canary resolve the selection before building anything -------------------------

@pytest.fixture
def nothing_built(monkeypatch, tmp_path):
    """Making an environment, or asking an index for versions, fails the command (with exit 3, not 2)."""
    import tempfile

    from suite.tools import envs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where an exit 3 leaves its traceback

    def refuse(*args, **kwargs):
        raise AssertionError("an environment was built (or an index asked) before the selection was checked")

    monkeypatch.setattr(envs, "ensure_env", refuse)
    monkeypatch.setattr(envs, "available_versions", refuse)


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["upgrade-check", "--baseline", "trl==1.15.0", "--candidate", "trl==1.16.0"],
    ["bisect", "--package", "trl", "--good", "1.15.0", "--bad", "1.16.0"],
    ["canary"],
])
def test_a_selection_of_no_case_is_a_usage_error_before_any_environment(command, tmp_path, nothing_built, capsys):
    """Was: both environments built (or reused), then exit 2 with a fragment of pytest's output."""
    out = ["--out", str(tmp_path / "report")] if command[0] != "bisect" else []
    where = ["--results-dir", str(tmp_path / "results")]
    assert cli.main([*command, "-k", "nosuchcase", *out, *where]) == 2
    assert "error: no case matches -m 'tiny' -k 'nosuchcase'" in capsys.readouterr().err
    assert cli.main([*command, "-m", "tiny and qlorra", *out, *where]) == 2
    assert "unknown marker(s) in -m 'tiny and qlorra': qlorra" in capsys.readouterr().err
    assert cli.main([*command, "-m", "tiny and", *out, *where]) == 2
    assert "wrong expression passed to -m" in capsys.readouterr().err
    assert not (tmp_path / "report").exists() and not (tmp_path / "results").exists()


def test_a_selection_that_matches_goes_on_to_the_environments(tmp_path, nothing_built, capsys):
    """The check lets a good selection through: the command reaches its first environment."""
    code = cli.main(["upgrade-check", "--baseline", "trl==1.15.0", "--candidate", "trl==1.16.0", "-k",
                     "tiny-llama/lora/base]", "--out", str(tmp_path / "r"), "--results-dir", str(tmp_path / "res")])
    assert code == 3 and "an environment was built" in capsys.readouterr().err


# -- the selection as pytest makes it ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    return load_cases()


def test_the_selection_chooses_by_markers_and_by_id_substrings(shipped):
    known = markers()
    ids = {c.id for c in choose(shipped, Selection("tiny and qlora"), known)}
    assert ids and all("/qlora/" in i and i.startswith("tiny-") for i in ids)
    assert {c.id for c in choose(shipped, Selection(None, "tiny-llama/lora/base]"), known)} == {"tiny-llama/lora/base"}
    # -k is case-insensitive and matches markers too, as pytest's KeywordMatcher does
    assert {c.id for c in choose(shipped, Selection("tiny", "TINY-LLAMA/LORA/BASE] or nosuch"), known)} == {
        "tiny-llama/lora/base"}
    assert Selection.from_args(["-m", "tiny", "--benchmark", "-k", "lora"]) == Selection("tiny", "lora")
    with pytest.raises(SelectionError, match="no case matches -m 'tiny' -k 'nosuch'"):
        choose(shipped, Selection("tiny", "nosuch"), known)
    with pytest.raises(SelectionError, match="unknown marker"):
        choose(shipped, Selection("tny"), known)


@pytest.mark.slow
@pytest.mark.parametrize("m,k", [("tiny and qlora", None), ("tiny and not gpu", "lora and base"),
                                 (None, "tiny-llama/dpo"), ("packing or neftune", "not qwen"), ("tiny", "case")])
def test_the_selection_chooses_what_pytest_collects(shipped, m, k):
    """Held to pytest's own answer: the same case ids as `pytest --collect-only` of tests/test_matrix.py."""
    args = (["-m", m] if m else []) + (["-k", k] if k else [])
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", "-n", "0",
                          "--collect-only", "-q", "tests/test_matrix.py", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    collected = {line.split("[", 1)[1].rstrip("]") for line in out.stdout.splitlines() if "test_case[" in line}
    assert collected == {c.id for c in choose(shipped, Selection(m, k), markers())}


# -- --out is a folder ---------------------------------------------------------------------------------------

def test_report_out_that_is_a_file_is_refused_before_rendering(tmp_path, capsys):
    """Was: the whole Markdown, then a traceback, exit 1 (the gate's code)."""
    file = tmp_path / "report.txt"
    file.write_text("keep me\n")
    assert cli.main(["report", str(FIXTURES / "tiny-a"), str(FIXTURES / "tiny-b"), "--out", str(file)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and f"--out {file}: is a file; --out names a folder" in out.err
    assert file.read_text() == "keep me\n"
    assert cli.main(["report", str(FIXTURES / "tiny-a"), "--out", str(file / "sub"), "-q"]) == 2
    assert "cannot be made: " in capsys.readouterr().err
    assert options.check_out_dir(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"  # made when written
    assert options.check_out_dir(tmp_path) == tmp_path and options.check_out_dir(None) is None


# -- case files: a key given twice ---------------------------------------------------------------------------

def test_a_case_file_with_a_key_given_twice_is_refused_naming_file_and_line(tmp_path):
    """Was: loaded; the second `methods:` replaced the first and the lora case disappeared."""
    d = write_cases(tmp_path, """
        matrix:
          - models: [tiny-llama]
            methods: [lora]
            features: [[]]
            methods: [full]
    """)
    with pytest.raises(CaseError, match=r"matrix.yaml: line 6: .*duplicate key 'methods' \(first at line 4\)"):
        load_cases(d)
    # a merge key followed by an override of one of its keys is YAML's override, not a duplicate
    (d / "matrix.yaml").write_text("matrix:\n  - &e {models: [tiny-llama], methods: [lora]}\n"
                                   "  - {<<: *e, methods: [full]}\n")
    assert sorted(c.id for c in load_cases(d)) == ["tiny-llama/full/base", "tiny-llama/lora/base"]


def test_a_budget_file_with_a_key_given_twice_is_refused(tmp_path):
    (tmp_path / "cpu.yaml").write_text("profile: cpu\nbudgets:\n  - cases: '*'\n    source: measured\n"
                                       "    peak_rss_gib: 2\n    peak_rss_gib: 3\n")
    with pytest.raises(CaseError, match=r"cpu.yaml: line 6: .*duplicate key 'peak_rss_gib'"):
        budgets.load_profile(tmp_path, "cpu")


# -- list lists runs -----------------------------------------------------------------------------------------

def test_list_shows_runs_not_the_reference_folders(tmp_path, capsys):
    """Was: results/baselines/cpu listed as a run, with an errno error in place of its manifest."""
    shutil.copytree(FIXTURES / "tiny-a", tmp_path / "tiny-a")
    shutil.copytree(ROOT / "results" / "baselines" / "cpu", tmp_path / "baselines" / "cpu")
    no_manifest = tmp_path / "crashed"  # records, no manifest: a run whose parent died early is still a run
    no_manifest.mkdir()
    shutil.copy(next((FIXTURES / "tiny-a").glob("tiny-*.json")), no_manifest)
    assert [p.name for p in runs.find_runs(tmp_path)] == ["crashed", "tiny-a"]
    assert cli.main(["list", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "baselines" not in out.out and "cpu" not in out.out.split() and "2 runs in" in out.err


# -- a bug of the suite: exit 3, one line, the traceback in a file -------------------------------------------

def test_an_unexpected_exception_is_exit_3_with_one_line_and_the_traceback_kept(monkeypatch, capsys, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def broken(args, extra):
        raise KeyError("boom")

    monkeypatch.setattr(cli, "cmd_list", broken)
    assert cli.main(["list"]) == cli.EXIT_SUITE == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the suite itself failed (KeyError: 'boom')" in err
    path = Path(err.rsplit("the traceback is in ", 1)[1].strip())
    text = path.read_text()
    assert path.parent == tmp_path and text.startswith("python -m suite list") and "KeyError: 'boom'" in text


def test_exit_codes_table_says_what_each_code_means():
    """docs/exit-codes.md is the one table; the CLI's constants are its first four rows."""
    doc = (ROOT / "docs" / "exit-codes.md").read_text()
    for code, words in ((cli.EXIT_PASS, "passes"), (cli.EXIT_GATE, "gate fails"), (cli.EXIT_USAGE, "usage"),
                        (cli.EXIT_SUITE, "the suite itself failed")):
        assert f"| {code} | {words}" in doc, (code, words)
    assert "pytest's own codes" in doc and "| 4 | usage error" in doc and "| 5 | nothing collected" in doc
