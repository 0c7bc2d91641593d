"""What adding a trainer or a feature really touches (docs/layout.md, "Adding a trainer, a quantization, a
method"), kept true: in a copy of suite/ and cases/ (xdist runs other tests on the real tree meanwhile), a
stand-in trainer is its backend package (backend, its trl config builder, its own check, Metric line, logged
key, fault kind and declared config field) plus its entry in the registry plus one YAML case file; a stand-in
feature is one Feature line in suite/matrix/axes.py plus one YAML case file. A child interpreter with the copy
first on sys.path then finds the new trainer everywhere the suite asks for one: the cases load with its
marker, the judge plans its check (and the check judges a crafted payload), the metrics know its metric, the
fault hook its fault kind, the config invariant its declared field. Counted by comparing the two trees; left
without its registry entry (or its Feature line), the same child fails naming what is unknown. And each
trainer package's docs paragraph (its __init__ docstring) names the metrics and faults it declares."""
from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "suite/train/backends/standin"
REGISTRY = "suite/train/backends/registry.py"
AXES = "suite/matrix/axes.py"

# The stand-in trainer's package: trl's SFTTrainer under its own trainer name, with its own config builder,
# check, metric, logged key, fault and declared field (what a new trainer such as trl's distillation brings).
STANDIN = {
    "__init__.py": '''\
        """A stand-in trainer (trainer `standin`: trl's SFTTrainer under its own name), as tests/test_standin_trainer.py
        adds it: its check `standin_tokens_rise`, its metric `standin_tokens_final`, its fault `standin_no_log`."""
        ''',
    "config.py": '''\
        """The stand-in's trl config: SFTConfig with the field it pins."""
        from __future__ import annotations

        from suite.train import args as train_args

        TEXT_FIELD = "text"


        def standin_config(case, output_dir, device, precision, model_init_kwargs):
            from trl import SFTConfig

            return train_args.config(case, output_dir, device, precision, model_init_kwargs, SFTConfig,
                                     "trl's SFTConfig", {"dataset_text_field": TEXT_FIELD})
        ''',
    "checks.py": '''\
        """The stand-in's own check: the token count it logs rises."""
        from __future__ import annotations

        from suite.checkresult import CheckResult
        from suite.train.backends.base import TrainerCheck


        def tokens_rise(case, payload, bounds, inv):
            series = [p["num_tokens"] for p in payload.loss_curve if "num_tokens" in p]
            ok = len(series) >= 2 and series[-1] > series[0]
            return CheckResult("standin_tokens_rise", ok, f"{case.id}: num_tokens {series[:1]} -> {series[-1:]}")


        CHECKS = (TrainerCheck("standin_tokens_rise", tokens_rise),)
        ''',
    "metrics.py": '''\
        """The stand-in's Metric line and the key it logs."""
        from __future__ import annotations

        from suite.metric import Metric

        LOGGED_KEYS = ("standin/tokens",)
        LOGGED_METRICS = {"standin_tokens_final": "standin/tokens"}
        METRICS = (Metric("standin_tokens_final", "tokens", "none", "stand-in: tokens seen, last k logged steps"),)
        ''',
    "faults.py": '''\
        """The stand-in's known fault: its trainer logs nothing."""
        from __future__ import annotations

        from suite.train.backends.base import DeclaredFaults


        def no_log(trainer, faults):
            trainer.log = lambda *args, **kwargs: None


        NO_LOG = DeclaredFaults(("standin_no_log",), no_log)
        ''',
    "backend.py": '''\
        """The stand-in's backend: trl's SFTTrainer, its own name, config, checks, metrics, fault and field."""
        from __future__ import annotations

        from suite.train.backends.sft.backend import HFSFTTrainer
        from suite.train.backends.standin import checks as own_checks
        from suite.train.backends.standin import metrics as own_metrics
        from suite.train.backends.standin.config import TEXT_FIELD, standin_config
        from suite.train.backends.standin.faults import NO_LOG


        class Standin(HFSFTTrainer):
            name = "stand-in SFTTrainer"
            trainer = "standin"
            description = "trainer: a stand-in (trl's SFTTrainer under its own name)"
            checks = own_checks.CHECKS
            metrics = own_metrics.METRICS
            logged_metrics = own_metrics.LOGGED_METRICS
            logged_keys = own_metrics.LOGGED_KEYS
            faults = (NO_LOG,)

            def declared_fields(self, case, common):
                return {**super().declared_fields(case, common), "dataset_text_field": TEXT_FIELD}

            def trl_config(self, case, output_dir, device, precision, init_kwargs):
                return standin_config(case, output_dir, device, precision, init_kwargs)


        BACKEND = Standin()
        ''',
}
STANDIN_YAML = """\
matrix:
  - name: a stand-in trainer
    models: [tiny-llama]
    trainers: [standin]
    methods: [lora]
    datasets: [text]
"""
FEATURE_LINE = '    Feature("standin_checkpointing", checkpointing=True),\n'
FEATURE_YAML = """\
matrix:
  - name: a stand-in feature
    models: [tiny-llama]
    methods: [lora]
    features: [[standin_checkpointing]]
    datasets: [text]
"""

# What the child asks of the copy; it prints what it found as JSON (an exception fails it, naming what).
TRAINER_PROBE = """\
import json, sys
import suite
assert suite.__file__.startswith(sys.argv[1]), suite.__file__  # the copy's suite, not the real tree's
from suite.cases import load_cases, markers

cases = [c for c in load_cases() if "standin" in c.markers]  # first: without its registry entry this fails
from suite.invariants.configs import declared_fields
from suite.judge.checks import planned, run_all
from suite.judge.metrics import METRICS
from suite.train import inject
from suite.train.backends.registry import backend_for, logged_keys
from suite.train.payload import Payload

case = cases[0]
curve = [{"step": i + 1, "loss": 3.0 - 0.1 * i, "num_tokens": 100.0 * (i + 1)} for i in range(10)]
doc = {"loss_curve": curve, "step_times_s": [], "step_tokens": [], "flops": None,
       "train": {"steps": 10, "runtime_s": 1.0, "epochs": 1.0, "tokens": 1, "processed_tokens": 1, "samples": 1},
       "params": {"trainable": 1, "total": 2, "trainable_bytes": 4, "trainable_dtypes": ["float32"],
                  "trainable_tensors": 1},
       "memory": {"device": "cpu", "peak_rss_bytes": 1, "start_rss_bytes": 1},
       "timing": {"build_s": 0.0, "train_s": 0.0, "save_s": 0.0, "reload_s": 0.0},
       "checkpoint": {"dir": "x", "kind": "adapter"}, "reload": None,
       "device": {"type": "cpu", "precision": "fp32", "threads": 1, "kernels": {}, "attention_ops": None,
                  "name": "cpu"}}
flat = dict(doc, loss_curve=[dict(p, num_tokens=100.0) for p in curve])
judged = {r.name: r.passed for r in run_all(case, Payload.from_dict(doc), None)}
judged_flat = {r.name: r.passed for r in run_all(case, Payload.from_dict(flat), None)}
print(json.dumps({
    "ids": [c.id for c in cases], "marker": "standin" in markers(), "backend": backend_for(case).name,
    "planned": [name for name, _ in planned(case, Payload.from_dict(doc), None, None)],
    "passes": judged.get("standin_tokens_rise"), "fails_flat": judged_flat.get("standin_tokens_rise"),
    "metric": "standin_tokens_final" in METRICS, "logged": "standin/tokens" in logged_keys(),
    "fault": "standin_no_log" in inject.KINDS, "field": declared_fields(case).get("dataset_text_field")}))
"""
FEATURE_PROBE = """\
import json, sys
import suite
assert suite.__file__.startswith(sys.argv[1]), suite.__file__
from suite.cases import load_cases, markers

cases = [c for c in load_cases() if "standin_checkpointing" in c.markers]
print(json.dumps({"ids": [c.id for c in cases], "marker": "standin_checkpointing" in markers(),
                  "checkpointing": [c.uses.checkpointing for c in cases]}))
"""


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for part in ("suite", "cases"):
        shutil.copytree(ROOT / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def changed_files(original: Path, copy: Path) -> set[str]:
    """The files under suite/ and cases/ that the copy adds or changes (removed ones too), as relative paths."""
    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for part in ("suite", "cases") for p in (root / part).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    mine, theirs = files(copy), files(original)
    return (mine ^ theirs) | {f for f in mine & theirs if not filecmp.cmp(original / f, copy / f, shallow=False)}


def add_standin_trainer(tree: Path, registry_entry: bool = True) -> None:
    package = tree / PACKAGE
    package.mkdir()
    for name, text in STANDIN.items():
        (package / name).write_text(textwrap.dedent(text))
    if registry_entry:
        registry = tree / REGISTRY
        text = registry.read_text()
        anchor = "from suite.train.backends.sft import unsloth\n"
        assert anchor in text and "    rloo.BACKEND,\n" in text
        entry = "from suite.train.backends.standin import backend as standin\n"
        registry.write_text(text.replace(anchor, anchor + entry)
                            .replace("    rloo.BACKEND,\n", "    rloo.BACKEND,\n    standin.BACKEND,\n"))
    (tree / "cases" / "standin.yaml").write_text(STANDIN_YAML)


def add_standin_feature(tree: Path, feature_line: bool = True) -> None:
    if feature_line:
        axes = tree / AXES
        anchor = '    Feature("fsdp", launch="--use_fsdp", shards=True),\n'
        assert anchor in axes.read_text()
        axes.write_text(axes.read_text().replace(anchor, anchor + FEATURE_LINE))
    (tree / "cases" / "standin_feature.yaml").write_text(FEATURE_YAML)


def probe(tree: Path, script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, str(tree)], cwd=tree, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow  # a child interpreter (about 0.5 s)
def test_a_standin_trainer_is_its_package_one_registry_entry_and_its_yaml(tmp_path):
    tree = _copy(tmp_path)
    add_standin_trainer(tree)
    expected = {f"{PACKAGE}/{name}" for name in STANDIN} | {REGISTRY, "cases/standin.yaml"}
    assert changed_files(ROOT, tree) == expected
    assert len(expected) == len(STANDIN) + 2  # its package's files, the registry, one YAML file
    done = probe(tree, TRAINER_PROBE)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["ids"], found
    assert found["marker"] and found["backend"] == "stand-in SFTTrainer"
    assert found["planned"][-1] == "standin_tokens_rise", found["planned"]  # after the generic checks
    assert found["passes"] is True and found["fails_flat"] is False  # its check judges, and can fail
    assert found["metric"] and found["logged"] and found["fault"]
    assert found["field"] == "text"


@pytest.mark.slow  # a child interpreter (about 0.5 s)
def test_without_its_registry_entry_the_standin_trainer_is_unknown(tmp_path):
    tree = _copy(tmp_path)
    add_standin_trainer(tree, registry_entry=False)
    assert REGISTRY not in changed_files(ROOT, tree)
    done = probe(tree, TRAINER_PROBE)
    assert done.returncode != 0
    assert "standin" in done.stderr and "cases/standin.yaml" in done.stderr, done.stderr[-3000:]


@pytest.mark.slow  # a child interpreter (about 0.5 s)
def test_a_standin_feature_is_one_feature_line_and_its_yaml(tmp_path):
    tree = _copy(tmp_path)
    add_standin_feature(tree)
    assert changed_files(ROOT, tree) == {AXES, "cases/standin_feature.yaml"}
    done = probe(tree, FEATURE_PROBE)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["ids"] and found["marker"] and all(found["checkpointing"]), found


@pytest.mark.slow  # a child interpreter (about 0.5 s)
def test_without_its_feature_line_the_standin_feature_is_unknown(tmp_path):
    tree = _copy(tmp_path)
    add_standin_feature(tree, feature_line=False)
    done = probe(tree, FEATURE_PROBE)
    assert done.returncode != 0
    assert "standin_checkpointing" in done.stderr and "standin_feature.yaml" in done.stderr, done.stderr[-3000:]


@pytest.mark.parametrize("kind", ["trainer", "feature"])
def test_the_count_sees_a_file_touched_beyond_the_target(tmp_path, kind):
    """A change that needed one more file (a central table edited) is counted."""
    tree = _copy(tmp_path)
    (add_standin_trainer if kind == "trainer" else add_standin_feature)(tree)
    central = tree / "suite" / "judge" / "metrics.py"
    central.write_text(central.read_text() + "\n# standin\n")
    assert "suite/judge/metrics.py" in changed_files(ROOT, tree)


def package_docs(backend) -> str:
    """The docs paragraphs (package docstrings) of the trainer packages a backend's classes live in."""
    import importlib

    docs = []
    for cls in type(backend).__mro__:
        module = cls.__module__
        if module.startswith("suite.train.backends.") and module.count(".") == 4:  # suite.train.backends.<pkg>.<mod>
            docs.append(importlib.import_module(module.rsplit(".", 1)[0]).__doc__ or "")
    return "\n".join(docs)


def undocumented(backends) -> list[str]:
    """Each metric and fault kind a trainer declares that its packages' docs paragraphs do not name."""
    return [f"{b.name}: {what}" for b in backends
            for what in [m.name for m in b.metrics] + [k for f in b.faults for k in f.kinds]
            if f"`{what}`" not in package_docs(b)]


def test_every_trainer_package_documents_its_metrics_and_faults():
    from suite.train.backends.registry import BACKENDS

    packaged = [b for b in BACKENDS if package_docs(b)]
    assert {b.trainer for b in packaged} >= {"dpo", "kto", "reward", "grpo", "rloo"}
    assert undocumented(packaged) == []


def test_an_undocumented_metric_is_found():
    from suite.metric import Metric
    from suite.train.backends.dpo.backend import DPO

    class Undocumented(DPO):
        metrics = (*DPO.metrics, Metric("dpo_new_final", "nats", "none", "not in the package's paragraph"))

    assert undocumented([Undocumented()]) == ["trl DPOTrainer: dpo_new_final"]
