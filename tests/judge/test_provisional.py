"""A reference measured on one machine is provisional (suite/judge/machines.py, suite/judge/baselines.py):
judged within the spread measured between the machines of its kernel class for its method family (or
the cross-class band), saying so; a second machine's import confirms it; a curve beyond what was
measured still fails. Crafted records from a kept run (no training)."""
from __future__ import annotations

import json
import shutil

import pytest

from suite.cli import main
from suite.cases import load_cases
from suite import kernelclass
from suite.judge import bands, baselines, machines
from suite.judge.baselines import BaselineStore
from suite.paths import TESTS
from suite.tools import references
from suite.versions import STACK, norm_name, read_pins

BF16 = kernelclass.of_kernels({"torch_cpu_capability": "AVX512",
                               "bitsandbytes": {"backend": "CPU", "avx512bf16": True}})
KEPT = TESTS / "fixtures" / "machines" / "amd-epyc-zen4-avx512-bf16" / "regression-run"
CASE = "tiny-llama/qlora/base"
INTEL = {"vendor": "GenuineIntel", "model": "Xeon (crafted)", "flags": ["avx512f", "avx512_bf16", "amx_tile"]}


@pytest.fixture(scope="module")
def cases(request):
    return {c.id: c for c in load_cases(request.config.getoption("cases_dir"))}


def _moved(curve: list[dict], by: float, step: int | None = None) -> list[dict]:
    return [{"step": p["step"], "loss": p["loss"] + (by if step in (None, p["step"]) else 0.0)} for p in curve]


def _run(tmp_path, name, case, curve=None, cpu=None, run_id=None):
    """A run folder of one record of `case`: the kept AMD Zen 4 record, made today's (fingerprint, the
    lock's stack) and, where asked, of another CPU, run and curve."""
    doc = json.loads((KEPT / "tiny-llama__qlora__base.json").read_text())
    pins = read_pins()
    doc["environment"]["packages"].update({n: pins[norm_name(n)] for n in STACK if norm_name(n) in pins})
    doc["fingerprint"], doc["run_id"] = case.fingerprint, run_id or name
    if cpu is not None:
        doc["environment"]["cpu"] = cpu
    if curve is not None:
        doc["loss_curve"] = curve
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{case.slug}.json").write_text(json.dumps(doc))
    return folder, doc


def _confirmed(tmp_path, case, spread: float):
    """A reference of `case` that two machines confirmed, its runs `spread` apart (per step and drift)."""
    store = BaselineStore(tmp_path, update=True, profile="cpu")
    curve = json.loads((KEPT / f"{case.slug}.json").read_text())["loss_curve"]
    store.checks(case, curve, [], tmp_path / "run", BF16)
    path = store.path_for(case, "avx512-bf16")
    doc = baselines.read_curve(path)
    prov = machines.of_reference(doc, path).with_run(machines.machine_of({"cpu": INTEL}),
                                                     machines.Run("other", "crafted", "", spread, spread))
    head = {**{k: v for k, v in doc.items() if k != "curve"}, machines.FIELD: prov.to_dict()}
    path.write_text(baselines.dumps_curve(head, doc["curve"]))


def test_a_reference_of_one_machine_is_judged_within_its_family_s_spread_and_says_so(tmp_path, cases):
    case, sibling = cases[CASE], cases["tiny-llama/qlora/packing"]  # one family: sft-qlora
    curve = json.loads((KEPT / "tiny-llama__qlora__base.json").read_text())["loss_curve"]
    BaselineStore(tmp_path, update=True, profile="cpu").checks(case, curve, [], tmp_path / "run", BF16)
    moved = _moved(curve, case.checks.curve_atol + 0.005, step=10)  # beyond the case's own tolerance
    [alone] = BaselineStore(tmp_path, profile="cpu").checks(case, moved, [], tmp_path / "r", BF16)
    assert not alone.passed, alone.message  # no spread, no band measured: the case's own tolerance
    assert "provisional: one machine" in alone.message and "the case's own tolerance" in alone.message
    _confirmed(tmp_path, sibling, 0.01)
    [ok] = BaselineStore(tmp_path, profile="cpu").checks(case, moved, [], tmp_path / "r", BF16)
    assert ok.passed, ok.message
    assert "kernel class avx512-bf16's own reference, provisional: one machine" in ok.message
    assert "within the spread between machines of class avx512-bf16 for sft-qlora (per step +0.01" in ok.message
    assert "measured between 2 machines in 2 runs over 1 case(s), worst tiny-llama/qlora/packing" in ok.message
    # can fail: a step beyond the case's tolerance plus the family's spread
    [bad] = BaselineStore(tmp_path, profile="cpu").checks(case, _moved(curve, case.checks.curve_atol + 0.011, 10),
                                                          [], tmp_path / "r", BF16)
    assert not bad.passed and "provisional: one machine" in bad.message
    assert "differs from its golden curve" in bad.message
    # another family's spread is not this one's: a DPO QLoRA reference confirmed widely changes nothing
    other = tmp_path / "other"
    BaselineStore(other, update=True, profile="cpu").checks(case, curve, [], tmp_path / "run", BF16)
    _confirmed(other, cases["tiny-llama/dpo/qlora/base/preference"], 0.5)
    [own] = BaselineStore(other, profile="cpu").checks(case, moved, [], tmp_path / "r", BF16)
    assert not own.passed and "no spread between machines of class avx512-bf16 for sft-qlora" in own.message


def test_without_a_family_spread_the_cross_class_band_judges_a_provisional_reference(tmp_path, cases):
    case = cases[CASE]
    curve = json.loads((KEPT / "tiny-llama__qlora__base.json").read_text())["loss_curve"]
    BaselineStore(tmp_path, update=True, profile="cpu").checks(case, curve, [], tmp_path / "run", BF16)
    bands.path_of(tmp_path, "cpu").write_text(json.dumps({
        "kind": bands.KIND, "schema_version": 1, "classes": ["avx2", "avx512-bf16"],
        "bands": {"qlora": {"golden_curve": {"atol": 0.02, "drift": 0.002, "cases": 1, "worst_case": "x"}}}}))
    moved = _moved(curve, case.checks.curve_atol + 0.015, step=5)
    [ok] = BaselineStore(tmp_path, profile="cpu").checks(case, moved, [], tmp_path / "r", BF16)
    assert ok.passed and "provisional: one machine" in ok.message
    assert "no spread measured between machines of class avx512-bf16 for sft-qlora: within the cross-class " \
           "band for qlora (per step +0.02" in ok.message
    [bad] = BaselineStore(tmp_path, profile="cpu").checks(case, _moved(curve, case.checks.curve_atol + 0.025, 5),
                                                          [], tmp_path / "r", BF16)
    assert not bad.passed and "provisional: one machine" in bad.message


@pytest.mark.slow
def test_a_second_machine_s_import_confirms_the_reference_with_its_measured_spread(tmp_path, cases):
    case, root = cases[CASE], tmp_path / "baselines"
    amd, doc = _run(tmp_path, "amd", case)
    done = references.import_runs([str(amd)], root, "cpu", TESTS.parent / "cases")
    assert done.worked and done.written == 1
    path = root / "cpu" / "avx512-bf16" / f"{case.slug}.json"
    first = baselines.read_curve(path)
    assert first["family"] == "sft-qlora" and first["machines"]["count"] == 1 and first["machines"]["runs"] == 1
    # a second machine whose curve lies 0.03 away at step 7 (beyond the case's 0.021)
    moved = _moved(doc["loss_curve"], 0.03, step=7)
    intel, _ = _run(tmp_path, "intel", case, curve=moved, cpu=INTEL)
    done = references.import_runs([str(intel)], root, "cpu", TESTS.parent / "cases")
    assert done.confirmed == 1 and not done.written
    after = baselines.read_curve(path)
    assert after["curve"] == first["curve"]  # the reference's curve stays; the run is listed
    entry = after["machines"]
    assert entry["count"] == 2 and entry["runs"] == 2
    assert entry["spread"]["atol"] == pytest.approx(0.03) and entry["spread"]["drift"] == pytest.approx(0.001)
    assert [m["cpu"] for m in entry["list"]] == ["AuthenticAMD AMD EPYC", "GenuineIntel Xeon (crafted)"]
    store = BaselineStore(root, profile="cpu")
    [ok] = store.checks(case, moved, [], tmp_path / "r", BF16)
    assert ok.passed, ok.message
    assert ("confirmed by 2 machines (AuthenticAMD AMD EPYC, GenuineIntel Xeon (crafted)), 2 runs, which differ by "
            "more than the case's tolerance: within the spread measured between them (per step +0.03") in ok.message
    [bad] = store.checks(case, _moved(doc["loss_curve"], 0.03 + case.checks.curve_atol + 0.002, step=7), [],
                         tmp_path / "r", BF16)
    assert not bad.passed and "confirmed by 2 machines" in bad.message
    # importing the same run again changes nothing
    again = references.import_runs([str(intel)], root, "cpu", TESTS.parent / "cases")
    assert again.already == 1 and baselines.read_curve(path) == after


def test_machines_that_agree_leave_the_case_s_own_tolerance(tmp_path, cases):
    case, root = cases[CASE], tmp_path / "baselines"
    amd, doc = _run(tmp_path, "amd", case)
    intel, _ = _run(tmp_path, "intel", case, curve=_moved(doc["loss_curve"], 0.001, step=3), cpu=INTEL)
    references.import_runs([str(amd), str(intel)], root, "cpu", TESTS.parent / "cases")
    [ok] = BaselineStore(root, profile="cpu").checks(case, doc["loss_curve"], [], tmp_path / "r", BF16)
    assert "confirmed by 2 machines" in ok.message and "they differ by at most 0.001 per step" in ok.message
    assert f"atol {case.checks.curve_atol:g}," in ok.message  # not widened
    [bad] = BaselineStore(root, profile="cpu").checks(case, _moved(doc["loss_curve"], case.checks.curve_atol + 0.0015,
                                                                   step=3), [], tmp_path / "r", BF16)
    assert not bad.passed


def test_a_machine_of_the_class_beyond_the_cross_class_band_is_no_confirmation(tmp_path, cases):
    case, root = cases[CASE], tmp_path / "baselines"
    amd, doc = _run(tmp_path, "amd", case)
    references.import_runs([str(amd)], root, "cpu", TESTS.parent / "cases")
    bands.path_of(root, "cpu").write_text(json.dumps({
        "kind": bands.KIND, "schema_version": 1, "classes": ["avx2", "avx512-bf16"],
        "bands": {"qlora": {"golden_curve": {"atol": 0.1, "drift": 0.05, "cases": 1, "worst_case": "x"}}}}))
    far, _ = _run(tmp_path, "far", case, curve=_moved(doc["loss_curve"], 0.3), cpu=INTEL)
    done = references.import_runs([str(far)], root, "cpu", TESTS.parent / "cases")
    assert not done.worked and any("is no confirmation" in line for line in done.lines)
    assert baselines.read_curve(root / "cpu" / "avx512-bf16" / f"{case.slug}.json")["machines"]["count"] == 1


def _fixture_folders() -> set:
    return {p for p in (TESTS / "fixtures" / "machines").rglob("*") if p.is_dir()}


@pytest.mark.slow
def test_import_copies_fixtures_only_when_asked_and_its_exit_code_says_whether_it_imported(tmp_path, cases, capsys):
    """Issue 34: the import wrote copies into tests/fixtures/machines/ unasked and exited 2 ("bands need
    two classes") after importing; now 0 when it imported (the bands a note), 2 on bad input."""
    case, root = cases[CASE], tmp_path / "baselines"
    amd, _ = _run(tmp_path, "amd", case)
    before = _fixture_folders()
    common = ["--baselines-dir", str(root), "--profile", "cpu", "--cases-dir", str(TESTS.parent / "cases")]
    assert main(["references", "import", str(amd), *common]) == 0
    assert "note: cross-class bands not re-measured" in capsys.readouterr().err
    assert _fixture_folders() == before and (root / "cpu" / "avx512-bf16" / f"{case.slug}.json").is_file()
    assert main(["references", "import", str(amd), "--fixtures", str(tmp_path / "fx"), *common]) == 0
    assert (tmp_path / "fx" / "amd" / f"{case.slug}.json").is_file() and _fixture_folders() == before
    assert main(["references", "import", str(tmp_path / "no-such-run"), *common]) == 2
    stale, _ = _run(tmp_path, "stale", case)
    record = stale / f"{case.slug}.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "fingerprint": "0" * 16}))
    assert main(["references", "import", str(stale), *common]) == 2  # nothing importable: said, per record
    assert "left out tiny-llama/qlora/base: fingerprint" in capsys.readouterr().out


def test_the_import_reads_every_run_before_writing_anything(tmp_path, cases):
    case, root = cases[CASE], tmp_path / "baselines"
    amd, _ = _run(tmp_path, "amd", case)
    broken = tmp_path / "broken"
    shutil.copytree(amd, broken)
    (broken / f"{case.slug}.json").write_text("{")
    with pytest.raises(references.ReferenceError):
        references.import_runs([str(amd), str(broken)], root, "cpu", TESTS.parent / "cases")
    assert not root.exists()


def test_a_kept_fixture_leaves_out_the_bulky_evidence_and_still_replays(tmp_path, cases):
    """A record's captured evidence (distillation's logits: 375 KB a case) is what its relations were judged
    from in the run; the kept fixture trims it, says how much and why, and the replay judges the copy as the
    original: the rest of the record is copied untouched."""
    case, root = cases[CASE], tmp_path / "baselines"
    amd, _ = _run(tmp_path, "amd", case)
    record = amd / f"{case.slug}.json"
    doc = json.loads(record.read_text())
    evidence = {"micro_batches": [[0.125] * 64] * 400}  # over references.TRIM_BYTES in JSON
    small = {"settings": {"beta": 0.5}}
    doc["resolved"] = {**(doc.get("resolved") or {}), "distillation": evidence, "small": small}
    record.write_text(json.dumps(doc))
    references.import_runs([str(amd)], root, "cpu", TESTS.parent / "cases", fixtures=tmp_path / "fx")
    kept = json.loads((tmp_path / "fx" / "amd" / f"{case.slug}.json").read_text())
    assert kept["resolved"]["distillation"]["trimmed_bytes"] == len(json.dumps(evidence))
    assert kept["resolved"]["small"] == small  # under the limit: kept as recorded
    assert {k: v for k, v in kept.items() if k != "resolved"} == {k: v for k, v in doc.items() if k != "resolved"}
    judged, problems = references.replay(tmp_path / "fx" / "amd", root, TESTS.parent / "cases", tmp_path / "b",
                                         tmp_path / "scratch")
    assert judged == 1, problems
