"""The shape of the house: no import cycles among suite modules (TYPE_CHECKING imports count: a cycle
hidden under one is still a cycle in the design), the matrix importing nothing of the training side, no
module reaching into another's private helpers, no value of any axis (trainer, method, adapter,
quantization, library, feature, data format, loss, model size) compared as a string outside the modules
that own it, the training path not knowing the test faults, every stage a sub-package (docs/layout.md)."""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "suite"
STAGES = ("matrix", "run", "train", "judge", "records", "report", "plugin", "tools", "invariants")
# checkresult and metric: the shapes a trainer package (under train/) and the judge both declare with
TOP_LEVEL = {"__init__", "__main__", "cli", "errors", "options", "paths", "machine", "versions", "cases", "checkresult", "kernelclass",
             "metric"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SUITE.rglob("*.py"))}


def imports(path: Path, known: set[str], root: Path = ROOT) -> set[str]:
    """The suite modules a module imports, at run time or under TYPE_CHECKING alike (both are arrows
    of the design); importing a.b.c runs the package a.b too."""
    tree = ast.parse(path.read_text())
    me = module_name(path, root)
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(2, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in known and prefix != me and not me.startswith(prefix + "."):
                    found.add(prefix)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_among_suite_modules():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_a_cycle_hidden_under_type_checking_counts(tmp_path):
    pkg = tmp_path / "suite"
    pkg.mkdir()
    (pkg / "a.py").write_text("from suite import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from suite import a\n")
    known = {"suite.a", "suite.b"}
    edges = {"suite.a": imports(pkg / "a.py", known, tmp_path), "suite.b": imports(pkg / "b.py", known, tmp_path)}
    assert cycles(edges) == [["suite.a", "suite.b"]]


def test_the_matrix_imports_nothing_of_the_training_side():
    """The matrix owns the vocabulary; train/ declares against it (a TYPE_CHECKING import counts)."""
    found = {f"{m} -> {t}" for m, targets in graph().items() if m.startswith("suite.matrix")
             for t in targets if not t.startswith(("suite.matrix", "suite.errors", "suite.paths"))}
    assert not found, sorted(found)


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_stage_is_a_sub_package_and_the_top_level_is_small():
    for stage in STAGES:
        assert (SUITE / stage / "__init__.py").is_file(), stage
    loose = {p.stem for p in SUITE.glob("*.py")} - TOP_LEVEL
    assert not loose, f"modules outside a stage: {sorted(loose)}"


def test_package_inits_import_nothing_of_the_suite():
    """Importing suite.x.y runs suite/x/__init__.py: an empty one keeps the graph what the files say."""
    for init in SUITE.rglob("__init__.py"):
        assert not imports(init, set(modules())), init


def test_no_module_calls_another_modules_private_helper():
    mods = modules()
    bad = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("suite"):
                for a in node.names:
                    if a.name.startswith("_") and node.module != name:
                        bad.append(f"{name} imports {node.module}.{a.name}")
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("suite"):
                        aliases[a.asname or a.name.split(".")[0]] = a.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = ast.unparse(node.value)
                target = aliases.get(base.split(".")[0])
                if target and (target + base[len(base.split('.')[0]):]) in mods:
                    bad.append(f"{name} uses {base}.{node.attr}")
    assert not bad, bad


def _compared_strings(path: Path) -> list[tuple[int, str]]:
    """(line, string) of every string compared (==, !=, in, not in, is) with something, alone or as an
    element of a literal tuple, list or set (`case.distributed in ("ddp", "fsdp")`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for operand in (node.left, *node.comparators):
            elements = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            found += [(e.lineno, e.value) for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return found


def _string_comparisons(path: Path, word: str) -> list[int]:
    """Lines where the string `word` is compared with something."""
    return sorted(line for line, value in _compared_strings(path) if value == word)


def axis_values() -> dict[str, set[str]]:
    """Every axis's value names: trainers, methods, adapters, quantizations, libraries, features, data
    formats, losses and model sizes."""
    from suite.matrix import axes
    from suite.train.backends.registry import BACKENDS

    return {"trainer": {b.trainer for b in BACKENDS}, "method": set(axes.METHODS),
            "adapter": {a.name for a in axes.ADAPTERS}, "quantization": {q.name for q in axes.QUANTIZATIONS},
            "library": {lib.name for lib in axes.LIBRARIES}, "feature": set(axes.FEATURES),
            "format": set(axes.FORMATS), "loss": set(axes.LOSSES), "size": set(axes.SIZES)}


def axis_names() -> set[str]:
    return set().union(*axis_values().values())


# Where an axis value may be compared as a string: the matrix, which owns the vocabulary (its types, the
# rules, the loader that validates case files, the ids), and the objects that own the values (the
# quantizations). Everyone else asks the typed value (case.uses, case.format, case.loss_kind, case.model.scale).
ALLOWED = {*(SUITE / "matrix").glob("*.py"), SUITE / "train" / "quantize.py"}


def name_comparisons(paths, names: set[str], root: Path = ROOT) -> set[str]:
    return {f"{p.relative_to(root)}:{line} ({value})"
            for p in paths for line, value in _compared_strings(p) if value in names}


def test_every_axis_is_covered():
    """A new axis of the matrix (a value type in suite/matrix/axes.py) joins axis_values."""
    from suite.matrix import axes

    declared = {n for n, v in vars(axes).items() if isinstance(v, type) and v.__module__ == axes.__name__}
    # the axes' value types, and those that are parts of a value, not an axis of their own
    parts = {"Package", "FeatureSet", "Method"}
    assert declared - parts == {"Adapter", "Quantization", "Library", "Feature", "Format", "Loss", "Size"}
    assert set(axis_values()) == {"trainer", "method", "adapter", "quantization", "library", "feature", "format",
                                  "loss", "size"}


def test_no_axis_name_is_compared_outside_the_modules_that_own_it():
    found = name_comparisons([p for p in SUITE.rglob("*.py") if p not in ALLOWED], axis_names())
    assert not found, f"an axis name compared as a string outside the matrix and its object: {sorted(found)}"


def test_a_planted_comparison_of_each_axis_is_found(tmp_path):
    """A copy of the package with one comparison per axis planted (the real tree is left alone: xdist runs
    the check above at the same time)."""
    copy = tmp_path / "suite"
    shutil.copytree(SUITE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "train" / "planted.py").write_text(
        'def four_bit(case):\n    return case.method == "qlora"\n'
        'def packs(case):\n    return "packing" in case.features\n'
        'def ranks(case):\n    return case.distributed in ("ddp", "fsdp")\n'
        'def prompt(case):\n    return case.dataset != "prompt_completion"\n'
        'def masked(case):\n    return case.effective_loss == "assistant_only"\n'
        'def large(case):\n    return case.model.size == "7b"\n')
    allowed = {copy / p.relative_to(SUITE) for p in ALLOWED}
    found = name_comparisons([p for p in copy.rglob("*.py") if p not in allowed], axis_names(), tmp_path)
    assert found == {"suite/train/planted.py:2 (qlora)", "suite/train/planted.py:4 (packing)",
                     "suite/train/planted.py:6 (ddp)", "suite/train/planted.py:6 (fsdp)",
                     "suite/train/planted.py:8 (prompt_completion)", "suite/train/planted.py:10 (assistant_only)",
                     "suite/train/planted.py:12 (7b)"}


def test_the_special_casing_check_finds_a_comparison(tmp_path):
    src = tmp_path / "x.py"
    src.write_text('if case.method == "unsloth":\n    pass\nNAMES = ("unsloth",)\n# "unsloth" == x\n'
                   'if lib not in ["x", "unsloth"]:\n    pass\n')
    assert _string_comparisons(src, "unsloth") == [1, 5]


FAULTS = "suite.train.inject"


def fault_users(root: Path = ROOT) -> set[str]:
    """Modules of suite/train/ (the fault module aside) that import the fault module or name it: the
    training path must not know the faults (suite/run/runner.py installs them, suite/train/inject.py)."""
    train = root / "suite" / "train"
    found = set()
    for path in sorted(train.rglob("*.py")):
        name = module_name(path, root)
        if name == FAULTS:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            named = (isinstance(node, ast.Import) and any(a.name.startswith(FAULTS) for a in node.names)) or (
                isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None
                and (node.module.startswith(FAULTS) or (node.module == "suite.train"
                                                        and any(a.name == "inject" for a in node.names))))
            if named or (isinstance(node, ast.Name) and node.id == "inject"):
                found.add(f"{name}:{node.lineno}")
    return found


def test_the_training_path_does_not_know_the_faults():
    assert not fault_users(), sorted(fault_users())


def test_a_planted_fault_call_is_found(tmp_path):
    copy = tmp_path / "suite"
    shutil.copytree(SUITE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "train" / "planted.py").write_text("def train(trainer):\n    from suite.train import inject\n"
                                               "    inject.install(trainer)\n")
    (copy / "train" / "planted2.py").write_text("import suite.train.inject\n")
    assert fault_users(tmp_path) == {"suite.train.planted:2", "suite.train.planted:3", "suite.train.planted2:1"}


# The kernel class is derived once per run and handed on (docs/layout.md): from what the child reported
# only in judge_case, from a record only where the record is read; its constructor is kernelclass.py's.
KERNEL_CLASS_BUILDERS = {
    "KernelClass": {SUITE / "kernelclass.py"},
    "of_kernels": {SUITE / "kernelclass.py", SUITE / "judge" / "judging.py"},
    "recorded": {SUITE / "kernelclass.py", SUITE / "records" / "record.py"},
}


def kernel_class_builds(paths, root: Path = ROOT) -> set[str]:
    """Calls that build a kernel class (KERNEL_CLASS_BUILDERS) outside the modules allowed to."""
    found = set()
    for path in paths:
        text = path.read_text()
        if "kernelclass" not in text:  # builds nothing of it (parsing only these keeps the check fast)
            continue
        tree = ast.parse(text)
        names, modules_ = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "suite.kernelclass":
                names |= {a.asname or a.name for a in node.names if a.name in KERNEL_CLASS_BUILDERS}
            elif isinstance(node, ast.ImportFrom) and node.module == "suite":
                modules_ |= {a.asname or a.name for a in node.names if a.name == "kernelclass"}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in names:
                called = func.id
            elif (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in modules_
                  and func.attr in KERNEL_CLASS_BUILDERS):
                called = func.attr
            else:
                continue
            if path not in KERNEL_CLASS_BUILDERS[called]:
                found.add(f"{path.relative_to(root)}:{node.lineno} ({called})")
    return found


def test_the_kernel_class_is_built_in_one_place():
    assert not kernel_class_builds(SUITE.rglob("*.py")), sorted(kernel_class_builds(SUITE.rglob("*.py")))


def test_a_planted_kernel_class_rebuild_is_found(tmp_path):
    """A report that derives the class again from a record's kernels, instead of reading the record's."""
    planted = tmp_path / "suite" / "report" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("from suite import kernelclass\n\n\ndef klass(rec):\n"
                       "    return kernelclass.of_kernels(rec.device['kernels'])\n")
    assert kernel_class_builds([planted], tmp_path) == {"suite/report/planted.py:5 (of_kernels)"}
