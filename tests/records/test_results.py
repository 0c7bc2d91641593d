"""The record schema: writing, reading, and refusing what cannot be read, by name."""
from __future__ import annotations

import json

import pytest

from suite.errors import RecordError
from suite.records import results


def minimal_record(**over) -> dict:
    rec = {"schema_version": results.SCHEMA_VERSION, "kind": results.RECORD_KIND, "run_id": "r1",
           "case_id": "tiny-llama/lora/base", "status": "passed", "markers": ["lora"], "case": {},
           "fingerprint": "abc", "metrics": {}, "loss_curve": [], "checks": [], "environment": {},
           "backend": {"name": "trl SFTTrainer", "label": "HF", "trainer_class": "SFTTrainer", "twin": None}}
    rec.update(over)
    return rec


def test_round_trip(tmp_path):
    path = tmp_path / "a.json"
    results.write_json_atomic(path, minimal_record())
    assert results.read_record(path).case_id == "tiny-llama/lora/base"
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("mutate,words", [
    (lambda r: r.pop("case_id"), "field case_id: missing"),
    (lambda r: r.update(status="great"), "field status: 'great' is not one of"),
    (lambda r: r.update(metrics=[]), "field metrics: expected dict, got list"),
    (lambda r: r.update(schema_version=99), "field schema_version: 99 is newer than this ftsuite reads"),
    (lambda r: r.update(schema_version="1"), "field schema_version: missing or not an integer"),
    (lambda r: r.update(kind="other"), "field kind: expected"),
])
def test_invalid_records_are_refused_naming_file_and_field(tmp_path, mutate, words):
    rec = minimal_record()
    mutate(rec)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rec))
    with pytest.raises(RecordError) as err:
        results.read_record(path)
    assert str(path) in str(err.value) and words in str(err.value)


def test_corrupt_and_truncated_files(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(minimal_record())[:40])
    with pytest.raises(RecordError, match=r"cut.json: corrupt or truncated JSON at line 1"):
        results.read_record(path)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(RecordError, match="not a result record"):
        results.read_record(tmp_path / "list.json")


def test_load_run_keeps_good_records_and_names_bad_ones(tmp_path):
    results.write_json_atomic(tmp_path / "good.json", minimal_record())
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "manifest.json").write_text("{}")
    records, errors = results.load_run(tmp_path)
    assert [r.case_id for r in records] == ["tiny-llama/lora/base"]
    assert len(errors) == 1 and errors[0].path.endswith("bad.json")


def test_record_paths_never_overwrite(tmp_path):
    first = results.record_path(tmp_path, "slug")
    first.write_text("{}")
    second = results.record_path(tmp_path, "slug")
    assert second.name == "slug.2.json"
    second.write_text("{}")
    assert results.record_path(tmp_path, "slug").name == "slug.3.json"


@pytest.mark.parametrize("run_id,ok", [("nightly-2026.11", True), ("../etc", False), ("", False), ("a b", False)])
def test_run_ids(run_id, ok):
    if ok:
        assert results.check_run_id(run_id) == run_id
    else:
        with pytest.raises(ValueError, match="run id"):
            results.check_run_id(run_id)
    assert results.check_run_id(results.new_run_id())
