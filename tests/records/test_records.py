"""The typed case record (suite/records/record.py): every record committed to the repository loads
and writes back what it read (schema 1 plus the backend it is given), a broken field is named with its
file, a newer schema is refused, a new record says which backend trained it, and the reports read the
backend from the record, never from today's backends. Each check is also shown failing on purpose."""
from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest

from suite.cases import load_cases
from suite.errors import RecordError
from suite.paths import ROOT
from suite.records import record as record_mod
from suite.records import results, runs
from suite.records.record import SCHEMA_VERSION, BackendInfo, CaseRecord
from suite.report import sidebyside
from tests.helpers import write_cases
from tests.test_architecture import graph, imports, modules

RECORD = re.compile(r'"kind"\s*:\s*"ftsuite\.case-result"')
# The committed files that hold a case record and must be refused, on purpose (tests/fixtures/make_runs.py),
# with the words of the refusal.
REFUSED = {
    "tests/fixtures/runs/verdicts-cand/truncated.json": "corrupt or truncated JSON",
    "tests/fixtures/runs/verdicts-cand/crafted__lost-truncated.json": "corrupt or truncated JSON",
    "tests/fixtures/runs/verdicts-cand/newer-schema.json":
        f"field schema_version: 99 is newer than this ftsuite reads ({SCHEMA_VERSION}); upgrade ftsuite to read it",
}
# A record as this suite writes it (schema 2): run 20261205-140035-9835, `tiny-llama/lora/base` (home shown as ~)
SCHEMA_2 = "tests/fixtures/records/schema-2/tiny-llama__lora__base.json"
# What the trainers were at schema 1, said here apart from record.py's table (by trainer; unsloth by method)
SCHEMA_1 = {"sft": ("trl SFTTrainer", "HF", "SFTTrainer", None), "dpo": ("trl DPOTrainer", "DPO", "DPOTrainer", None),
            "hf_trainer": ("transformers Trainer with peft", "Trainer", "Trainer", "sft")}
SCHEMA_1_UNSLOTH = ("unsloth", "unsloth", "unsloth", None)


def committed_records() -> list[str]:
    """Every JSON file git tracks that holds a case record (by its kind), as repository paths."""
    files = subprocess.run(["git", "ls-files", "*.json"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return [f for f in files if RECORD.search((ROOT / f).read_text(errors="replace"))]


def expected_backend(doc: dict) -> tuple | None:
    case = doc.get("case") or {}
    if doc["schema_version"] >= 2:
        b = doc["backend"]
        return None if b is None else (b["name"], b["label"], b["trainer_class"], b["twin"])
    if case.get("method") == "unsloth" and not case.get("trainer"):
        return SCHEMA_1_UNSLOTH
    return SCHEMA_1.get(case.get("trainer") or "sft")


def problems_of(path: Path, where: str) -> list[str]:
    """What is wrong with a record file that must load: it is refused, does not write back what it
    read (plus, for a schema-1 record, its backend, placed after `case`), or names the wrong backend."""
    doc = json.loads(path.read_text())
    try:
        rec = results.read_record(path)
    except RecordError as exc:
        return [f"{where}: refused: {exc.message}"]
    out = []
    got = rec.to_dict()
    want = dict(doc)
    if doc["schema_version"] < record_mod.BACKEND_SINCE:
        keys = list(doc)
        keys.insert(keys.index("case") + 1, "backend")
        want = {k: doc[k] if k != "backend" else (rec.backend.to_dict() if rec.backend else None) for k in keys}
    if got != want:
        diff = sorted(k for k in set(got) | set(want) if got.get(k, "(absent)") != want.get(k, "(absent)"))
        out.append(f"{where}: to_dict() is not what was read: {', '.join(diff)}")
    elif list(got) != list(want):
        out.append(f"{where}: keys out of order: {list(got)} != {list(want)}")
    backend = None if rec.backend is None else (rec.backend.name, rec.backend.label, rec.backend.trainer_class,
                                                rec.backend.twin)
    if backend != expected_backend(doc):
        out.append(f"{where}: backend {backend}, expected {expected_backend(doc)}")
    if CaseRecord.from_dict(got, where) != rec:
        out.append(f"{where}: to_dict() does not read back as the same record")
    return out


def refusal_problem(path: Path, where: str, words: str) -> str | None:
    try:
        results.read_record(path)
    except RecordError as exc:
        return None if (str(path) in str(exc) and words in str(exc)) else f"{where}: refused, but with {exc}"
    return f"{where}: loads, but must be refused ({words})"


# -- every committed record ------------------------------------------------------------------------

def test_every_committed_record_loads_and_writes_back_what_it_read():
    files = committed_records()
    assert len(files) >= 300 and set(REFUSED) <= set(files), "the committed records were not found"
    problems = [p for f in files if f not in REFUSED for p in problems_of(ROOT / f, f)]
    problems += [p for f, words in REFUSED.items() if (p := refusal_problem(ROOT / f, f, words))]
    assert not problems, "\n".join(problems[:20])
    versions = {json.loads((ROOT / f).read_text())["schema_version"] for f in files if f not in REFUSED}
    assert SCHEMA_VERSION in versions and 1 in versions and SCHEMA_2 in files  # schema 2 and schema 1 alike


FULL = "tests/fixtures/machines/intel-xeon-avx512-amx/regression-run-worker-a/tiny-llama__lora__base.json"


def _a_committed(name: str = FULL) -> dict:
    return json.loads((ROOT / name).read_text())


def _schema_2(name: str = FULL) -> dict:
    doc = _a_committed(name)
    keys = list(doc)
    keys.insert(keys.index("case") + 1, "backend")
    backend = {"name": "trl SFTTrainer", "label": "HF", "trainer_class": "SFTTrainer", "twin": None}
    return {k: doc[k] if k != "backend" else backend for k in keys} | {"schema_version": 2}


def test_the_round_trip_check_finds_a_field_the_record_drops(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_schema_2()))
    assert problems_of(path, "r.json") == []
    to_dict = CaseRecord.to_dict
    monkeypatch.setattr(CaseRecord, "to_dict", lambda self: {k: v for k, v in to_dict(self).items() if k != "wall_s"})
    assert problems_of(path, "r.json")[0] == "r.json: to_dict() is not what was read: wall_s"


def test_the_round_trip_check_finds_keys_out_of_order(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_schema_2()))
    to_dict = CaseRecord.to_dict
    monkeypatch.setattr(CaseRecord, "to_dict", lambda self: dict(sorted(to_dict(self).items())))
    assert problems_of(path, "r.json")[0].startswith("r.json: keys out of order")


def test_the_backend_check_finds_a_legacy_table_that_moved(tmp_path, monkeypatch):
    """The schema-1 table is data about old records: relabelling it (as today's backends may be) is found."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_a_committed()))
    assert problems_of(path, "r.json") == []
    monkeypatch.setitem(record_mod.LEGACY_BACKENDS, "sft", BackendInfo("trl SFTTrainer", "SFT", "SFTTrainer"))
    assert problems_of(path, "r.json") == ["r.json: backend ('trl SFTTrainer', 'SFT', 'SFTTrainer', None), expected "
                                           "('trl SFTTrainer', 'HF', 'SFTTrainer', None)"]


def test_the_load_check_finds_a_record_that_is_refused_and_a_refusal_that_loads(tmp_path):
    bad = _schema_2()
    bad["checks"] = [{"name": "loss_decreases"}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert problems_of(tmp_path / "bad.json", "bad.json") == [
        "bad.json: refused: field checks[0].passed: missing or not true/false"]
    (tmp_path / "good.json").write_text(json.dumps(_schema_2()))
    assert refusal_problem(tmp_path / "good.json", "good.json", "newer") == (
        "good.json: loads, but must be refused (newer)")


# -- schema 1 and schema 2 -------------------------------------------------------------------------

@pytest.mark.parametrize("trainer, method, backend", [
    (None, "lora", ("trl SFTTrainer", "HF", "SFTTrainer", None)),
    (None, "unsloth", ("unsloth", "unsloth", "unsloth", None)),
    ("dpo", "qlora", ("trl DPOTrainer", "DPO", "DPOTrainer", None)),
    ("hf_trainer", "lora", ("transformers Trainer with peft", "Trainer", "Trainer", "sft")),
    ("kto", "lora", None),  # schema 1 had no such trainer: the record says nothing of its backend
])
def test_a_schema_1_record_gets_the_backend_its_trainer_had_then(trainer, method, backend):
    doc = _a_committed()
    doc["case"] = {**doc["case"], "method": method, **({"trainer": trainer} if trainer else {})}
    rec = CaseRecord.from_dict(doc, "r.json")
    assert (None if rec.backend is None else tuple(vars(rec.backend).values())) == backend
    assert rec.to_dict()["backend"] == (None if backend is None else dict(zip(
        ("name", "label", "trainer_class", "twin"), backend)))


def test_a_schema_2_record_keeps_its_own_backend_and_what_this_suite_does_not_know():
    doc = _schema_2()
    doc["backend"] = {"name": "a renamed trainer", "label": "Old", "trainer_class": "OldTrainer", "twin": None}
    doc["added_later"] = {"by": "a newer writer of schema 2"}
    del doc["warnings"]  # a field older writers left out
    rec = CaseRecord.from_dict(doc, "r.json")
    assert rec.backend == BackendInfo("a renamed trainer", "Old", "OldTrainer")
    assert rec.to_dict() == doc and rec.warnings == []


def test_the_typed_accessors():
    rec = CaseRecord.from_dict(_a_committed(), "r.json")
    assert (rec.passed, rec.measured, rec.model_name, rec.trainer, rec.method, rec.features) == (
        True, True, "tiny-llama", "sft", "lora", ())
    assert rec.metric_value("final_loss") == rec.metrics["final_loss"]["value"] and rec.metric_value("nope") is None
    assert rec.metric_table()["final_loss"] == rec.metric_value("final_loss")
    assert rec.failed_checks == [] and rec.device_type == "cpu" and rec.metrics_schema == 1
    failed = CaseRecord.from_dict({**_a_committed(), "status": "failed", "checks": [
        {"name": "loss_decreases", "passed": False, "message": "no"}]}, "r.json")
    assert [c["name"] for c in failed.failed_checks] == ["loss_decreases"] and failed.measured and not failed.passed


def test_records_of_schema_1_and_2_compare_metric_by_metric_and_0_does_not():
    from suite.report import compare

    one, two = CaseRecord.from_dict(_a_committed(), "1.json"), CaseRecord.from_dict(_schema_2(), "2.json")
    assert compare.incomparable([one], [two], "passed", "passed", "", "") == []
    zero = CaseRecord.from_dict({**_a_committed(), "schema_version": 0}, "0.json")
    assert compare.incomparable([zero], [two], "passed", "passed", "", "") == ["schema_version 0 vs 2"]


# -- refused, naming the file and the field --------------------------------------------------------

@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.pop("case_id"), "field case_id: missing"),
    (lambda d: d.pop("backend"), "field backend: missing"),  # schema 2 says what trained it
    (lambda d: d.update(backend={"name": "x", "label": 3, "trainer_class": "T"}), "field backend.label: expected str"),
    (lambda d: d.update(backend=[]), "field backend: expected dict or null, got list"),
    (lambda d: d.update(status="great"), "field status: 'great' is not one of"),
    (lambda d: d.update(metrics=[]), "field metrics: expected dict, got list"),
    (lambda d: d["metrics"]["final_loss"].update(value="2.0"), "field metrics.final_loss.value: expected a number"),
    (lambda d: d.update(wall_s="fast"), "field wall_s: expected int or float or null, got str"),
    (lambda d: d.update(repeat=True), "field repeat: expected int or null, got bool"),
    (lambda d: d.update(markers=["case", 3]), "field markers[1]: expected str, got int"),
    (lambda d: d.update(loss_curve=[1.0]), "field loss_curve[0]: expected dict, got float"),
    (lambda d: d["checks"].insert(1, {"name": "x", "passed": "yes"}),
     "field checks[1].passed: missing or not true/false"),
    (lambda d: d.update(kernel_class=None), "field kernel_class: expected str, got NoneType"),
    (lambda d: d.update(kind="ftsuite.run"), "field kind: expected 'ftsuite.case-result'"),
    (lambda d: d.update(schema_version="2"), "field schema_version: missing or not an integer"),
])
def test_a_broken_field_is_refused_naming_the_file_and_the_field(tmp_path, mutate, words):
    doc = _schema_2()
    mutate(doc)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(RecordError) as err:
        results.read_record(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value)


def test_a_newer_schema_is_refused_with_the_message_it_always_got(tmp_path):
    path = tmp_path / "newer.json"
    path.write_text(json.dumps({**_schema_2(), "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(RecordError) as err:
        results.read_record(path)
    assert str(err.value) == (f"{path}: field schema_version: {SCHEMA_VERSION + 1} is newer than this ftsuite reads "
                              f"({SCHEMA_VERSION}); upgrade ftsuite to read it")
    # this version's own records are read
    path.write_text(json.dumps(_schema_2()))
    assert results.read_record(path).schema_version == SCHEMA_VERSION


# -- written in one place --------------------------------------------------------------------------

def test_a_new_record_is_schema_2_and_says_which_backend_trained_it(tmp_path, monkeypatch):
    from suite.run.session import RunSession

    monkeypatch.delenv("FTSUITE_TEST_BIG", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    cases = {c.id: c for c in load_cases(write_cases(tmp_path / "cases", """
        matrix:
          - {models: [big], methods: [qlora]}
          - {models: [big], methods: [lora], trainers: [hf_trainer]}
    """))}
    session = RunSession(tmp_path / "results", "r")
    sft, plain = session.run_case(cases["big/qlora/base"]), session.run_case(cases["big/hf_trainer/lora/base"])
    assert sft.status == plain.status == "skipped"  # no weights here: what is written without a child
    for res, backend in ((sft, ("trl SFTTrainer", "HF", "SFTTrainer", None)),
                         (plain, ("transformers Trainer with peft", "Trainer", "Trainer", "sft"))):
        doc = json.loads(res.record_path.read_text())
        assert doc["schema_version"] == SCHEMA_VERSION == 2 and doc["backend"] == dict(
            zip(("name", "label", "trainer_class", "twin"), backend))
        assert list(doc) == [k for k in record_mod.KEYS if k in doc]  # the written order
        assert results.read_record(res.record_path) == res.record and res.record.to_dict() == doc
        assert res.record.repeat == 0


# -- read from the record, not from today's backends -----------------------------------------------

def _run_of(tmp_path: Path, docs: list[dict]) -> runs.Run:
    for i, doc in enumerate(docs):
        (tmp_path / f"r{i}.json").write_text(json.dumps(doc))
    return runs.load(tmp_path)


def test_a_side_by_side_labels_each_side_as_its_record_says(tmp_path):
    sft = _schema_2()
    sft["backend"] = {"name": "trl OldSFTTrainer", "label": "HF", "trainer_class": "OldSFTTrainer", "twin": None}
    sft["metrics"] = {"tokens_per_s": {"value": 100.0, "unit": "tokens/s", "better": "higher"}}
    plain = copy.deepcopy(sft)
    plain["case"]["trainer"], plain["case_id"] = "hf_trainer", "tiny-llama/hf_trainer/lora/base"
    plain["backend"] = {"name": "a plain Trainer", "label": "Plain", "trainer_class": "Trainer", "twin": "sft"}
    [row] = sidebyside.frame(_run_of(tmp_path, [sft, plain])).to_dict("records")
    assert (row["comparison"], row["variant"], row["reference"]) == (
        "Plain vs OldSFTTrainer lora", "tiny-llama/hf_trainer/lora/base", "tiny-llama/lora/base")
    # a record that names no twin pairs with nothing, whatever today's backend of its trainer does
    (tmp_path / "b").mkdir()
    plain["backend"]["twin"] = None
    assert sidebyside.frame(_run_of(tmp_path / "b", [sft, plain])).empty


def report_imports_of_train(mods: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in mods.items() if m.startswith("suite.report")
                  for t in targets if t.startswith("suite.train"))


def test_no_report_module_imports_the_backends():
    assert report_imports_of_train(graph()) == []


def test_the_report_import_check_finds_a_planted_import(tmp_path):
    planted = tmp_path / "suite" / "report" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("from suite.train.backends.registry import backend_named\n")
    known = set(modules()) | {"suite.report.planted"}
    assert report_imports_of_train({"suite.report.planted": imports(planted, known, tmp_path)}) == [
        "suite.report.planted -> suite.train", "suite.report.planted -> suite.train.backends",
        "suite.report.planted -> suite.train.backends.registry"]


INTEL_RUN = "tests/fixtures/machines/intel-xeon-avx512-amx/benchmark-tiny-run/tiny-llama__lora__base.json"


def test_the_kernel_class_is_read_back_as_the_object_and_written_as_it_was_read():
    """A record that names its class reads it back as the class of its device.kernels; one written before
    records named classes gets it from its device.kernels and writes back without it; a record with no
    payload has none."""
    named = results.read_record(SCHEMA_2)
    assert named.kernel_class.name == "avx512-bf16" and named.kernel_class.feature_map["bnb_avx512bf16"] == "yes"
    assert named.kernel_class.kernels["torch_cpu_capability"] == "AVX512"
    assert named.to_dict()["kernel_class"] == "avx512-bf16"
    older = results.read_record(INTEL_RUN)
    assert "kernel_class" not in json.loads(Path(INTEL_RUN).read_text())
    assert older.kernel_class.name == "avx512-bf16" and older.class_name == "avx512-bf16"
    assert "kernel_class" not in older.to_dict()
    doc = json.loads(Path(SCHEMA_2).read_text())
    doc.pop("kernel_class")
    doc["device"] = None
    unjudged = CaseRecord.from_dict(doc, "x.json")
    assert unjudged.kernel_class is None and unjudged.class_name == "unknown"


def test_a_recorded_class_name_wins_over_one_derived_today():
    """The record keeps the class it was judged under, even where today's naming would derive another."""
    doc = json.loads(Path(SCHEMA_2).read_text())
    doc["kernel_class"] = "avx512-bf16-renamed"
    rec = CaseRecord.from_dict(doc, "x.json")
    assert rec.kernel_class.name == "avx512-bf16-renamed" and rec.kernel_class.feature_map["bnb_avx512bf16"] == "yes"
    assert rec.to_dict()["kernel_class"] == "avx512-bf16-renamed"
