"""The commands `report`, `list`, `show` (exit codes: 1 when the gate fails, 2 for usage errors)
and `pytest --compare-to RUN`."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from suite import cli
from suite.paths import TESTS

pytest_plugins = ["pytester"]

FIXTURES = TESTS / "fixtures" / "runs"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_report_gate_exit_codes(capsys, tmp_path):
    base, cand = str(FIXTURES / "verdicts-base"), str(FIXTURES / "verdicts-cand")
    code, out, err = run_cli(capsys, "report", base, cand, "--out", str(tmp_path / "r"))
    assert code == 1 and "gate fails: 1 errored, 3 worse, 1 newly failing" in err and out.startswith("## trl 1.16.0 → 1.17.0: not safe")
    assert (tmp_path / "r" / "report.html").is_file()
    assert "verdicts-cand/corrupt.json" in err  # unreadable records are named on stderr too
    assert run_cli(capsys, "report", base, cand, "--fail-on", "newly-failing", "-q")[0] == 1
    assert run_cli(capsys, "report", base, cand, "--fail-on", "none", "-q")[0] == 0
    assert run_cli(capsys, "report", str(FIXTURES / "tiny-a"), str(FIXTURES / "tiny-a"), "-q")[0] == 0


def _as_a_session_writes_it(run: Path) -> None:
    """Give a fixture run the manifest a real session writes: its cases planned, its records listed."""
    manifest = json.loads((run / "manifest.json").read_text())
    records = {json.loads(p.read_text())["case_id"]: [p.name] for p in sorted(run.glob("*.json"))
               if p.name != "manifest.json"}
    manifest.update(planned=sorted(records), records=records)
    (run / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.slow
def test_a_candidate_that_lost_or_truncated_a_record_fails_the_gate(capsys, tmp_path):
    base, cand = tmp_path / "base", tmp_path / "cand"
    for run in (base, cand):
        shutil.copytree(FIXTURES / "tiny-a", run)
        _as_a_session_writes_it(run)
    assert run_cli(capsys, "report", str(base), str(cand), "-q")[0] == 0  # identical: green
    (cand / "tiny-llama__lora__base.json").unlink()
    cut = cand / "tiny-llama__full__base.json"
    cut.write_text(cut.read_text()[:500])
    code, out, err = run_cli(capsys, "report", str(base), str(cand))
    assert code == 1 and "gate fails: 2 lost, 2 unreadable" in err, err
    assert "| lost | `tiny-llama/lora/base` | status | passed | - |" in out
    assert "record tiny-llama__lora__base.json is listed in manifest.json but missing" in out
    assert "| lost | `tiny-llama/full/base` | status | passed | - |" in out and "is unreadable: corrupt" in out
    # each verdict can be left out of the gate; both must be, for the gate to pass
    assert run_cli(capsys, "report", str(base), str(cand), "-q", "--fail-on", "worse,newly-failing,lost")[0] == 1
    assert run_cli(capsys, "report", str(base), str(cand), "-q", "--fail-on", "worse,newly-failing")[0] == 0
    # a run that did not finish: the gate says so, and so does a one-run report
    manifest = json.loads((cand / "manifest.json").read_text())
    (cand / "manifest.json").write_text(json.dumps({**manifest, "finished_at": None}))
    code, _, err = run_cli(capsys, "report", str(base), str(cand), "-q", "--fail-on", "unfinished")
    assert code == 1 and "gate fails: 1 unfinished" in err
    code, out, err = run_cli(capsys, "report", str(cand))
    assert code == 1 and "**Unfinished**: manifest.json says the run did not finish" in out, out
    (cand / "manifest.json").unlink()
    code, _, err = run_cli(capsys, "report", str(base), str(cand), "-q", "--fail-on", "unfinished")
    assert code == 1 and "gate fails: 1 unfinished" in err


def test_report_usage_errors_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", str(FIXTURES / "verdicts-base"), str(tmp_path / "nope"))
    assert code == 2 and "no such run" in err
    code, _, err = run_cli(capsys, "report", str(FIXTURES / "verdicts-base"), "--fail-on", "bogus")
    assert code == 2 and "--fail-on: unknown bogus" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "report", str(tmp_path / "empty"))
    assert code == 2 and "holds no result records" in err


def test_baseline_option_and_run_ids(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "report", "verdicts-cand", "--baseline", "verdicts-base",
                           "--results-dir", str(FIXTURES))
    assert code == 1 and out.startswith("## trl 1.16.0 → 1.17.0: not safe: ")  # the change and the answer first
    assert "Baseline `verdicts-base` (started " in out and "candidate `verdicts-cand` (started " in out


@pytest.mark.slow
def test_one_run_report_exits_0(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "report", str(FIXTURES / "tiny-a"), "--out", str(tmp_path / "one"))
    assert code == 0 and out.startswith("## ftsuite run tiny-a")
    assert (tmp_path / "one" / "summary.csv").is_file() and (tmp_path / "one" / "report.html").is_file()


def test_list_and_show(capsys):
    code, out, err = run_cli(capsys, "list", "--results-dir", str(FIXTURES))
    assert code == 0 and "6 runs" in err  # the crafted pairs verdicts-* and causes-*, tiny-a, tiny-b
    assert re.search(r"^verdicts-cand .* trl=1\.17\.0", out, re.M)
    code, out, _ = run_cli(capsys, "show", "tiny-a", "--results-dir", str(FIXTURES))
    assert code == 0 and "| `tiny-llama/lora/base` | passed |" in out


# ---- pytest --compare-to ----------------------------------------------------------------------

PLUGINS = ("-p", "no:cacheprovider", "-p", "suite.plugin.cases", "-p", "suite.plugin.compare")

@pytest.mark.slow
def test_compare_to_prints_the_summary(pytester, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURES / "verdicts-base", results / "base")
    pytester.makepyfile(test_fake=f"""
        import shutil
        def test_records(ft_session):
            ft_session.start()  # a real case would write a record; these are the crafted candidate's
            for path in __import__("pathlib").Path({str(FIXTURES / "verdicts-cand")!r}).glob("*.json"):
                if path.name != "manifest.json":
                    shutil.copy(path, ft_session.run_dir / path.name)
    """)
    out_dir = tmp_path / "report"
    result = pytester.runpytest(*PLUGINS, "--results-dir", str(results), "--run-id", "cand",
                                "--compare-to", "base", "--report-dir", str(out_dir))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ftsuite comparison*", "## *: *",  # the change and its answer
                                 "*Gate: fails*", "*crafted/newly-failing*", f"report: {out_dir}*report.html"])
    assert (out_dir / "report.md").is_file()


def test_compare_to_without_cases_says_so(pytester, tmp_path):
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest(*PLUGINS, "--results-dir", str(tmp_path), "--compare-to", "x")
    result.stdout.fnmatch_lines(["*--compare-to x: no case ran in this session, nothing to compare*"])


def test_a_one_run_report_names_planned_cases_without_a_record_and_fails(capsys, tmp_path):
    """A run whose manifest planned a case it has no record of (lost, or written by another process
    into another folder) says which, counts it and fails its gate."""
    run = tmp_path / "tiny-a"
    shutil.copytree(FIXTURES / "tiny-a", run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["planned"] = [*manifest.get("planned", []), "tiny-llama/qlora/elsewhere"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run_cli(capsys, "report", str(run))
    assert code == 1 and "1 lost" in out and "`tiny-llama/qlora/elsewhere`: planned in manifest.json, no record" \
        in out and "gate fails: 1 lost" in err
