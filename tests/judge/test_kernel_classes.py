"""Kernel classes (suite/kernelclass.py), references and bounds per class, cross-class bands:
named from what the libraries report, the nearest class chosen by rule, nothing passing silently."""
from __future__ import annotations

import json

import pytest

from suite import kernelclass
from suite.judge import bands, budgets, checks
from suite.judge.baselines import BaselineStore
from suite.cases import load_cases
from suite.paths import ROOT
from suite.tools import references
from suite.train.payload import Payload

AVX2 = {"torch_cpu_capability": "AVX2", "bitsandbytes": {"backend": "CPU", "avx512bf16": False}}
BF16 = {"torch_cpu_capability": "AVX512", "bitsandbytes": {"backend": "CPU", "avx512bf16": True}}
AVX512 = {"torch_cpu_capability": "AVX512", "bitsandbytes": {"backend": "CPU", "avx512bf16": False}}
H100 = {"torch_cpu_capability": "AVX512", "cuda_capability": "9.0", "tf32": False,
        "bitsandbytes": {"library": "libbitsandbytes_cuda130.so"}}
CURVE = [{"step": i + 1, "loss": 3.8 - 0.1 * i} for i in range(10)]


@pytest.fixture(scope="module")
def cases(request):
    return {c.id: c for c in load_cases(request.config.getoption("cases_dir"))}


def test_classes_are_named_from_what_the_libraries_report():
    assert kernelclass.of_kernels(AVX2).name == "avx2"
    assert kernelclass.of_kernels(BF16).name == "avx512-bf16"
    assert kernelclass.of_kernels(AVX512).name == "avx512"
    assert kernelclass.of_kernels(H100).name == "sm90"  # the H200 is sm_90 too: one class, two memory profiles
    hub = {**BF16, "bitsandbytes": {**BF16["bitsandbytes"], "kernels_package": True}}
    assert kernelclass.of_kernels(hub).name == "avx512-bf16-hubgemm"
    assert kernelclass.of_kernels({}).name == kernelclass.UNKNOWN
    # a name stands for its features, so a budget entry's class can be placed without its records
    assert kernelclass.from_name("avx512-bf16").feature_map == {
        "bnb_avx512bf16": "yes", "torch_cpu_capability": "AVX512", "bnb_kernels_package": "no"}
    assert kernelclass.from_name("sm90").feature_map["cuda_capability"] == "9.0"


def test_nearest_class_shares_the_most_numerics_deciding_weight():
    avx2, bf16 = kernelclass.from_name("avx2"), kernelclass.from_name("avx512-bf16")
    # an AVX-512 CPU without BF16 runs bitsandbytes' non-packed 4-bit path, as AVX2 does (weight 4),
    # and torch's AVX-512 kernels, as the BF16 class does (weight 2): AVX2 is nearer
    assert kernelclass.nearest(kernelclass.of_kernels(AVX512), [bf16, avx2]).name == "avx2"
    assert kernelclass.nearest(kernelclass.of_kernels(BF16), [avx2]).name == "avx2"
    assert kernelclass.nearest(kernelclass.of_kernels(BF16), [bf16]) is None  # itself is not "another"
    # ties go to the name that sorts first
    a, b = kernelclass.KernelClass("b-class", ()), kernelclass.KernelClass("a-class", ())
    assert kernelclass.nearest(kernelclass.of_kernels(AVX2), [a, b]).name == "a-class"


def _bands(root, atol, drift):
    path = bands.path_of(root, "cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kind": bands.KIND, "schema_version": 1, "classes": ["avx2", "avx512-bf16"],
                                "bands": {"lora": {"golden_curve": {"atol": atol, "drift": drift, "cases": 1,
                                                                   "worst_case": "x"}}}}))


def test_a_class_without_references_is_judged_against_the_nearest_within_the_band(tmp_path, cases):
    case = cases["tiny-llama/lora/base"]
    store = BaselineStore(tmp_path, profile="cpu")
    store.checks(case, CURVE, [], tmp_path / "run", kernelclass.of_kernels(AVX2))  # writes the AVX2 class's reference
    moved = [{"step": p["step"], "loss": p["loss"] + 0.01} for p in CURVE]
    [no_band] = store.checks(case, moved, [], tmp_path / "run", kernelclass.of_kernels(BF16))
    assert not no_band.passed and "no cross-class band measured for method lora" in no_band.message
    _bands(tmp_path, 0.02, 0.02)
    [ok] = store.checks(case, moved, [], tmp_path / "run", kernelclass.of_kernels(BF16))
    assert ok.passed, ok.message
    assert "no reference for kernel class avx512-bf16; compared with class avx2 within the measured " \
           "cross-class band for lora" in ok.message
    assert not (tmp_path / "cpu" / "avx512-bf16").exists()  # nothing is written for the class silently
    _bands(tmp_path, 0.001, 0.001)  # a difference beyond the band fails as any mismatch does
    [bad] = store.checks(case, moved, [], tmp_path / "run", kernelclass.of_kernels(BF16))
    assert not bad.passed and "differs from its golden curve" in bad.message and "kernel_class avx2 -> avx512-bf16" \
        in bad.message
    # with its own reference, a class is judged by the case's own tolerance only
    bf16 = kernelclass.of_kernels(BF16)
    BaselineStore(tmp_path, update=True, profile="cpu").checks(case, CURVE, [], tmp_path / "run", bf16)
    [own] = store.checks(case, moved, [], tmp_path / "run", kernelclass.of_kernels(BF16))
    assert not own.passed and "kernel class avx512-bf16's own reference" in own.message


def test_bands_are_measured_from_the_references():
    refs = {"avx2": {"s": {"case_id": "c", "method": "qlora", "fingerprint": "f", "curve": CURVE}},
            "avx512-bf16": {"s": {"case_id": "c", "method": "qlora", "fingerprint": "f", "measured": {
                "reload_logits": 0.03},
                "curve": [{"step": p["step"], "loss": p["loss"] + (0.02 if p["step"] == 3 else 0.0)} for p in CURVE]}}}
    doc = bands.measure(refs)
    entry = doc["bands"]["qlora"]["golden_curve"]
    assert entry["atol"] == pytest.approx(0.02) and entry["drift"] == pytest.approx(0.002)
    assert doc["bands"]["qlora"]["reload_logits"]["value"] == 0.03
    refs["avx2"]["s"]["fingerprint"] = "other"  # another configuration is never compared
    assert "golden_curve" not in bands.measure(refs)["bands"].get("qlora", {})


def test_the_committed_bands_are_a_measurement_of_the_committed_references(request):
    """bands.json is what `python -m suite references bands` measures from results/baselines/cpu/ today:
    editing it by hand (or a reference without re-measuring) fails here."""
    root = ROOT / "results" / "baselines"
    committed = json.loads(bands.path_of(root, "cpu").read_text())
    measured = bands.measure(references.references_by_class(root, "cpu", request.config.getoption("cases_dir")))
    assert committed["classes"] == measured["classes"] and committed["bands"] == measured["bands"]


def test_budgets_apply_per_class_and_fall_back_to_the_nearest_measured_class(tmp_path):
    (tmp_path / "cpu.yaml").write_text("""profile: cpu
budgets:
  - cases: "tiny-*"
    peak_memory_gib: 2.0
    source: seeded
  - cases: tiny-a
    kernel_class: avx2
    peak_memory_gib: 0.5
    records: 3
    runs: 2
    machines: 1
    source: measured on avx2
  - cases: tiny-a
    kernel_class: avx512-bf16
    peak_memory_gib: 0.9
    records: 3
    runs: 2
    machines: 2
    source: measured on avx512-bf16
""")
    entries = budgets.load_profile(tmp_path, "cpu")
    on_bf16 = budgets.evaluate(entries, "tiny-a", {"peak_rss_gib": 0.8}, kernelclass.of_kernels(BF16))
    assert all(r.passed for r in on_bf16) and "kernel class avx512-bf16" in on_bf16[1].message
    on_avx2 = budgets.evaluate(entries, "tiny-a", {"peak_rss_gib": 0.8}, kernelclass.of_kernels(AVX2))
    assert not on_avx2[1].passed and "kernel class avx2" in on_avx2[1].message
    # an AVX-512 CPU without BF16 has no entry of its own: the nearest measured class's (avx2) applies, said
    [_, near] = budgets.evaluate(entries, "tiny-a", {"peak_rss_gib": 0.8}, kernelclass.of_kernels(AVX512))
    assert not near.passed and "no budget measured on kernel class avx512: the nearest measured class avx2" \
        in near.message
    (tmp_path / "cpu.yaml").write_text("profile: cpu\nbudgets:\n  - {cases: a, kernel_class: '', source: s}\n")
    with pytest.raises(Exception, match=r"budgets\[0\]\.kernel_class"):
        budgets.load_profile(tmp_path, "cpu")


def _payload(case, reload_diff, ref_diff=None, repacked=False, kernels=BF16):
    doc = {"loss_curve": CURVE, "eval_curve": [], "step_times_s": [], "step_cpu_times_s": [], "step_tokens": [],
           "flops": None, "train": {"steps": 10, "runtime_s": 1.0, "epochs": 1.0, "tokens": 1, "processed_tokens": 1,
                                    "samples": 1}, "params": {"trainable": 1, "total": 2, "trainable_bytes": 4,
                                                   "trainable_dtypes": ["float32"], "trainable_tensors": 1},
           "memory": {"device": "cpu", "peak_rss_bytes": 1, "start_rss_bytes": 1},
           "timing": {"build_s": 0.0, "train_s": 0.0, "save_s": 0.0, "reload_s": 0.0}, "checkpoint": {"dir": "x", "kind": "adapter"},
           "reload": {"loader": "PeftModel.from_pretrained", "max_abs_logit_diff": reload_diff, "probe_shape": [1]},
           "device": {"type": "cpu", "precision": "fp32", "threads": 1, "kernels": kernels, "attention_ops": None,
                      "name": "cpu"},
           "resolved": {}, "warnings": []}
    if ref_diff is not None:
        doc["reference"] = {"kind": "the disabled adapter", "max_abs_logit_diff": ref_diff, "repacked": repacked}
    return Payload.from_dict(doc)


def _by_name(results):
    return {r.name: r for r in results}


def test_a_class_s_measured_bounds_replace_the_declared_ones_and_say_so(tmp_path, cases):
    case = cases["tiny-llama/dpo/qlora/base/preference"]
    (tmp_path / "cpu" / "avx512-bf16").mkdir(parents=True)
    entry = {"bound": 0.047, "worst": 0.031, "case": "c", "margin": 0.5, "measured_on": "runs r"}
    (tmp_path / "cpu" / "avx512-bf16" / bands.CLASS_FILE).write_text(json.dumps({
        "kind": bands.CLASS_KIND, "schema_version": 1, "name": "avx512-bf16",
        "bounds": {"reload_logits": {"qlora": entry}, "reference_untouched": {"qlora": {**entry, "bound": 0.0033}}}}))
    own = bands.class_bounds(tmp_path, "cpu", "avx512-bf16")
    none = bands.class_bounds(tmp_path, "cpu", "avx2")
    got = _by_name(checks.run_all(case, _payload(case, 0.03, 0.002, repacked=True), None, own))
    assert got["reload_logits"].passed and "kernel class avx512-bf16's measured bound" in got["reload_logits"].message
    assert got["reference_untouched"].passed and "repacked the 4-bit base" in got["reference_untouched"].message
    # the declared bounds where the class measured nothing more
    got = _by_name(checks.run_all(case, _payload(case, 0.03, 0.002, repacked=True), None, none))
    assert not got["reload_logits"].passed and "declared checks.logits_atol" in got["reload_logits"].message
    assert not got["reference_untouched"].passed and "has no measured bound" in got["reference_untouched"].message
    # the same kernels before and after: bitwise, whatever the class measured
    got = _by_name(checks.run_all(case, _payload(case, 0.0, 1e-6, repacked=False), None, own))
    assert not got["reference_untouched"].passed and "bitwise" in got["reference_untouched"].message
    # a known fault (the reference moved) is far beyond the class's bound
    got = _by_name(checks.run_all(case, _payload(case, 0.0, 0.05, repacked=True), None, own))
    assert not got["reference_untouched"].passed
    (tmp_path / "cpu" / "avx512-bf16" / bands.CLASS_FILE).write_text(json.dumps({
        "kind": bands.CLASS_KIND, "bounds": {"reload_logits": {"qlora": {"bound": 1}}}}))
    with pytest.raises(Exception, match=r"class.json.*bounds\.reload_logits\.qlora\.worst"):
        bands.class_bounds(tmp_path, "cpu", "avx512-bf16")


def _one_record_run(path, record, manifest):
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "tiny-llama__qlora__base.json").write_text(json.dumps(record))
    from suite.records import runs

    return runs.load(path)


@pytest.mark.parametrize("classes, moved, verdict", [
    (("avx2", "avx512-bf16"), 0.004, "within noise"),   # a switch of runner class, inside the band
    (("avx512-bf16", "avx512-bf16"), 0.004, "worse"),   # the same class: the metric's own tolerance (0)
    (("avx2", "avx512-bf16"), 0.05, "worse"),           # beyond the measured band: a regression still
])
def test_a_comparison_across_kernel_classes_judges_tight_metrics_by_the_band(tmp_path, classes, moved, verdict):
    from suite.report import compare, markdown

    machine = ROOT / "tests" / "fixtures" / "machines" / "intel-xeon-avx512-amx" / "benchmark-tiny-run"
    record = json.loads((machine / "tiny-llama__qlora__base.json").read_text())
    manifest = json.loads((machine / "manifest.json").read_text())
    kernels = {"avx2": AVX2, "avx512-bf16": BF16}
    sides = []
    for name, klass, shift in (("base", classes[0], 0.0), ("cand", classes[1], moved)):
        rec = json.loads(json.dumps(record))
        rec["kernel_class"], rec["device"]["kernels"] = klass, kernels[klass]
        rec["metrics"]["reload_max_abs_logit_diff"]["value"] = 0.004 + shift
        sides.append(_one_record_run(tmp_path / name, rec, manifest))
    df = compare.compare_runs(*sides)
    row = df[(df["case_id"] == "tiny-llama/qlora/base") & (df["metric"] == "reload_max_abs_logit_diff")].iloc[0]
    assert row["verdict"] == verdict, row["note"]
    if verdict == "within noise":
        assert "kernel classes differ (avx2 -> avx512-bf16): within the measured cross-class band" in row["note"]
    env = markdown.environment_md(compare.environment_diff(*sides))
    assert ("**Kernel class changed**: avx2 → avx512-bf16" in env[0]) == (classes[0] != classes[1])


@pytest.mark.parametrize("case_id", ["tiny-llama/full/base", "tiny-llama/lora/base", "tiny-llama/qlora/base",
                                     "tiny-llama/lora_8bit/base"])
def test_a_loss_computed_5_percent_off_fails_on_every_class_and_across_the_band(cases, case_id, tmp_path):
    """Portability cost no detection: the bisect fixture's bad commit (trl's loss scaled by 1.05) on a
    curve of the AVX512-BF16 class fails against that class's reference, and against the nearest
    class (AVX2) within the measured band, as a run of an AVX-512 CPU without BF16 would be judged."""
    case = cases[case_id]
    store = BaselineStore(ROOT / "results" / "baselines", profile="cpu")
    ref = json.loads((ROOT / "results" / "baselines" / "cpu" / "avx512-bf16" / f"{case.slug}.json").read_text())
    bf16 = kernelclass.of_kernels(BF16)
    assert [r.passed for r in store.checks(case, ref["curve"], [], tmp_path, bf16)] == [True]
    scaled = [{"step": p["step"], "loss": p["loss"] * 1.05} for p in ref["curve"]]
    [own] = store.checks(case, scaled, [], tmp_path, kernelclass.of_kernels(BF16))
    [across] = store.checks(case, scaled, [], tmp_path, kernelclass.of_kernels(AVX512))
    assert not own.passed and not across.passed
    assert "compared with class avx2 within the measured cross-class band" in across.message
