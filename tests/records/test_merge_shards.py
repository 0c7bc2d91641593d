"""One night = one run: the run folders of `--shard I/N` merge into one run that the report and its gate
read as one night (suite/records/merge.py, `python -m suite merge-shards`). Crafted shard folders are made
of the checked-in records of tests/fixtures/runs/tiny-a; the last test shards a real pytest run."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suite import cli
from suite.paths import ROOT, TESTS
from suite.matrix.selection import shard_of
from suite.records import merge, runs
from suite.records.results import read_manifest
from suite.report.model import Report
from suite.report.verdicts import LOST
from suite.run.session import shard_entry

FIXTURE = TESTS / "fixtures" / "runs" / "tiny-a"
GATE = ("worse", "newly-failing", "lost", "unreadable", "unfinished")


def fixture_records() -> dict[str, Path]:
    """The fixture run's record files by case id."""
    return {json.loads(p.read_text())["case_id"]: p for p in sorted(FIXTURE.glob("*.json"))
            if p.name != "manifest.json"}


def make_shards(tmp: Path, n: int = 3) -> list[Path]:
    """The fixture run as n shard folders, as n `pytest --shard I/n` runs would have written it."""
    records = fixture_records()
    base = json.loads((FIXTURE / "manifest.json").read_text())
    folders = []
    for i in range(1, n + 1):
        folder = tmp / f"night-s{i}"
        folder.mkdir()
        mine = {c: p for c, p in records.items() if shard_of(c, n) == i}
        for path in mine.values():
            shutil.copy2(path, folder / path.name)
        manifest = {**base, "run_id": folder.name, "planned": sorted(mine),
                    "records": {c: [p.name] for c, p in mine.items()},
                    "sessions": [{"id": f"host{i}:1:1", "argv": ["pytest"], "started_at": base["started_at"],
                                  "finished_at": base["finished_at"]}],
                    "shard": shard_entry(None, (i, n), sorted(records))}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
        folders.append(folder)
    return folders


def edit_manifest(folder: Path, **fields) -> None:
    doc = json.loads((folder / "manifest.json").read_text())
    doc.update(fields)
    (folder / "manifest.json").write_text(json.dumps(doc))


def gate_rows(run_dir: Path):
    """The one-run report's gated rows of a run folder."""
    rep = Report.build(runs.load(run_dir), [])
    return rep, rep.gate_frame


def test_the_fixture_spreads_over_three_shards():
    assert sorted({shard_of(c, 3) for c in fixture_records()}) == [1, 2, 3]


def test_three_shards_merge_into_one_run_whose_gate_passes(tmp_path):
    folders = make_shards(tmp_path)
    before = {p: p.read_bytes() for f in folders for p in f.rglob("*") if p.is_file()}
    out = tmp_path / "night"
    merged = merge.merge(out, folders)
    assert merged.records == 5 and not merged.missing
    run = runs.load(out)
    assert run.name == "night" and sorted(run.by_case()) == sorted(fixture_records()) and not run.errors
    assert run.planned == sorted(fixture_records()) and run.manifest["finished_at"]
    for case_id, path in fixture_records().items():  # copied byte for byte, the shards untouched
        assert (out / path.name).read_bytes() == path.read_bytes()
    assert {p: p.read_bytes() for f in folders for p in f.rglob("*") if p.is_file()} == before
    assert (out / "shards" / "2of3" / "manifest.json").is_file()
    rep, gated = gate_rows(out)
    assert not rep.gate_fails(GATE), gated
    assert len(run.manifest["sessions"]) == 3 and run.manifest["merged_shards"]["missing"] == []


def test_the_merged_run_compares_against_a_baseline_as_one_night(tmp_path):
    out = tmp_path / "night"
    merge.merge(out, make_shards(tmp_path))
    rep = Report.build(runs.load(FIXTURE), [runs.load(out)])
    assert not rep.gate_fails(GATE)
    assert set(rep.frame["case_id"]) >= set(fixture_records())


def test_a_missing_shard_makes_its_cases_lost_and_fails_the_gate(tmp_path):
    folders = make_shards(tmp_path)
    out = tmp_path / "night"
    merged = merge.merge(out, [folders[0], folders[2]])
    lost = [c for c in fixture_records() if shard_of(c, 3) == 2]
    assert merged.missing == {2: lost} and "shard 2/3 has no folder" in merged.describe()
    rep, gated = gate_rows(out)
    assert rep.gate_fails(GATE)
    rows = gated[gated["verdict"] == LOST]
    assert sorted(rows["case_id"]) == lost
    assert all("shard 2/3 left no run folder" in n for n in rows["note"])


def test_overlapping_shards_are_an_error_naming_both_folders(tmp_path):
    s1, s2, s3 = make_shards(tmp_path)
    stray = next(p for c, p in fixture_records().items() if shard_of(c, 3) == 1)
    shutil.copy2(stray, s2 / stray.name)
    with pytest.raises(merge.MergeError, match=f"records in two shards: {s1} and {s2}"):
        merge.merge(tmp_path / "night", [s1, s2, s3])
    assert not (tmp_path / "night").exists()


def test_a_record_outside_its_shards_slice_is_an_error(tmp_path):
    s1, s2, s3 = make_shards(tmp_path)
    stray = next(p for c, p in fixture_records().items() if shard_of(c, 3) == 1)
    shutil.move(s1 / stray.name, s2 / stray.name)
    edit_manifest(s1, records={})
    with pytest.raises(merge.MergeError, match=f"{s2 / stray.name}: case .* belongs to shard 1/3, not {s2}'s 2/3"):
        merge.merge(tmp_path / "night", [s1, s2, s3])


def test_shards_of_different_n_are_an_error(tmp_path):
    s1, s2, s3 = make_shards(tmp_path)
    edit_manifest(s3, shard={**read_manifest(s3)["shard"], "count": 4})
    with pytest.raises(merge.MergeError, match=f"shards of different N: {s1} is 1/3, {s3} is 3/4"):
        merge.merge(tmp_path / "night", [s1, s2, s3])


@pytest.mark.parametrize("field, value, said", [
    ("index", 1, "shard 1/3 twice"),
    ("planned_all", ["tiny-llama/lora/base"], "were planned with different cases"),
])
def test_shards_of_another_plan_are_an_error(tmp_path, field, value, said):
    s1, s2, s3 = make_shards(tmp_path)
    edit_manifest(s2, shard={**read_manifest(s2)["shard"], field: value})
    with pytest.raises(merge.MergeError, match=said):
        merge.merge(tmp_path / "night", [s1, s2, s3])


def test_shards_of_another_stack_are_an_error_naming_the_package(tmp_path):
    s1, s2, s3 = make_shards(tmp_path)
    env = read_manifest(s3)["environment"]
    edit_manifest(s3, environment={**env, "packages": {**env["packages"], "peft": "0.18.0"}})
    with pytest.raises(merge.MergeError, match=f"{s1} and {s3} differ in peft: '0.21.2' vs '0.18.0'"):
        merge.merge(tmp_path / "night", [s1, s2, s3])


def test_a_corrupt_record_is_an_error_naming_the_file(tmp_path):
    s1, s2, s3 = make_shards(tmp_path)
    victim = sorted(s2.glob("tiny-*.json"))[0]
    victim.write_text(victim.read_text()[:200])
    with pytest.raises(merge.MergeError, match=f"{victim}: corrupt or truncated JSON"):
        merge.merge(tmp_path / "night", [s1, s2, s3])
    assert not (tmp_path / "night").exists()


def test_a_listed_record_not_on_disk_is_an_error_naming_it(tmp_path):
    s1, s2, s3 = make_shards(tmp_path)
    victim = sorted(s3.glob("tiny-*.json"))[0]
    victim.unlink()
    with pytest.raises(merge.MergeError, match=f"{victim}: listed in .* but not on disk"):
        merge.merge(tmp_path / "night", [s1, s2, s3])


def test_a_run_that_is_no_shard_and_a_used_out_folder_are_refused(tmp_path):
    s1, s2, s3 = make_shards(tmp_path)
    with pytest.raises(merge.MergeError, match="exists and is not an empty folder"):
        merge.merge(s1, [s2, s3])
    with pytest.raises(merge.MergeError, match="field shard: missing"):
        merge.merge(tmp_path / "night", [FIXTURE])


def test_an_unfinished_shard_leaves_the_merged_run_unfinished(tmp_path):
    s1, s2, s3 = make_shards(tmp_path)
    edit_manifest(s2, finished_at=None)
    merge.merge(tmp_path / "night", [s1, s2, s3])
    rep, gated = gate_rows(tmp_path / "night")
    assert rep.gate_fails(GATE) and "unfinished" in set(gated["verdict"])


def test_the_manifest_keeps_the_whole_plan_across_reruns():
    first = shard_entry(None, (2, 3), ["a", "b"])
    assert first == {"index": 2, "count": 3, "planned_all": ["a", "b"]}
    assert shard_entry(first, (2, 3), ["c"])["planned_all"] == ["a", "b", "c"]


def test_the_cli_merges_and_says_what_it_did(tmp_path, capsys):
    s1, s2, s3 = make_shards(tmp_path)
    assert cli.main(["merge-shards", str(tmp_path / "night"), str(s1), str(s3)]) == 0
    assert "merged 2 of 3 shards" in capsys.readouterr().out
    assert cli.main(["merge-shards", str(tmp_path / "again"), str(s1), str(s1)]) == cli.EXIT_USAGE
    assert f"shard 1/3 twice: {s1} and {s1}" in capsys.readouterr().err


def test_the_nightly_merges_its_shards_and_reports_the_merged_run():
    import yaml

    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly-gpu.yml").read_text())
    gpu, night = doc["jobs"]["gpu"], doc["jobs"]["night"]
    assert night["needs"] == "gpu" and "cancelled()" in night["if"]
    [download] = [s for s in night["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact@")]
    [upload] = [s for s in gpu["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    shard_artifact = upload["with"]["name"]
    assert shard_artifact.startswith("nightly-${{ matrix.stack }}-shard")
    assert download["with"]["pattern"] == "nightly-${{ matrix.stack }}-shard*"
    runs_ = [s.get("run", "") for s in night["steps"]]
    merge_at = next(i for i, r in enumerate(runs_) if "python -m suite merge-shards \"results/${RUN_ID}\" shards/*/" in r)
    report_at = next(i for i, r in enumerate(runs_) if "python -m suite report \"results/${RUN_ID}\"" in r)
    assert merge_at < report_at and "lost" in runs_[report_at]
    assert not any("suite report" in s.get("run", "") for s in gpu["steps"])  # no per-shard report


CHEAP = "flash_attn or tiny-llama/lora/base]"  # one tiny case that trains, four that skip on a CPU


@pytest.mark.slow
def test_a_real_three_shard_pytest_run_merges_and_reports_as_one_run(tmp_path):
    """Three `pytest --shard I/3` runs of a few tiny cases (one trains, the flash-attn ones skip on a CPU),
    merged: the report's gate passes; without shard 2 it fails with lost."""
    root = ROOT
    results = tmp_path / "results"
    for i in (1, 2, 3):
        done = subprocess.run([sys.executable, "-m", "pytest", str(root / "tests" / "test_matrix.py"), "-m", "tiny",
                               "-k", CHEAP, "--shard", f"{i}/3", "--run-id", f"s{i}", "--results-dir", str(results),
                               "-n", "0", "-q", "-p", "no:cacheprovider"], cwd=root, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    plan = read_manifest(results / "s1")["shard"]["planned_all"]
    assert len(plan) == 5 and plan == read_manifest(results / "s3")["shard"]["planned_all"]
    shards = [str(results / f"s{i}") for i in (1, 2, 3)]
    assert cli.main(["merge-shards", str(results / "night"), *shards]) == 0
    assert sorted(runs.load(results / "night").by_case()) == sorted(plan)
    assert cli.main(["report", str(results / "night"), "-q", "--fail-on", ",".join(GATE)]) == 0
    assert cli.main(["merge-shards", str(results / "partial"), shards[0], shards[2]]) == 0
    rep, gated = gate_rows(results / "partial")
    assert sorted(gated[gated["verdict"] == LOST]["case_id"]) == [c for c in plan if shard_of(c, 3) == 2]
