"""The guard against shared oracles (issue 36): a relation that computes what it expects by calling the
library function it judges cannot see a change inside that function. Every module of suite/ that declares
`FORBIDDEN_ORACLES` (relation name -> dotted names it must not call) is scanned with `ast`
(tests/judge/oracle_scan.py says what counts as a reference), and every module that holds relations must
declare one. Planted modules show that each way of reaching a forbidden function fails the guard."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import suite
from suite.invariants.relations import RELATIONS
from tests.judge import oracle_scan as scan

ROOT = Path(suite.__file__).resolve().parent
PACKAGE = "suite"

# Modules that hold relations but do not declare FORBIDDEN_ORACLES yet: module -> why. An entry that
# declares one now, or no longer holds relations, fails test_allowlist_is_current (the list only shrinks).
NOT_YET = {
    "train/backends/dpo/checks.py": "DPO's checks: the preference helper of issue 36 declares its relations' oracles",
    "train/backends/kto/checks.py": "KTO's checks: the preference helper of issue 36 declares its relations' oracles",
    "train/backends/preference/checks.py": "the reference check: the preference helper of issue 36",
    "train/backends/reward/checks.py": "the reward model's checks: the preference helper of issue 36",
    "train/backends/online/checks.py": "GRPO/RLOO's checks (FirstLossByDefinition): the online helper of issue 36",
}

# Modules known to reach a function they must not: module -> why (a strict xfail, the list only shrinks). The
# MoE relation's use of load_balancing_loss_func came out with the by-definition relation (branch lm-defs).
KNOWN_SHARED: dict[str, str] = {}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


DECLARING = scan.declaring(ROOT, PACKAGE)


def _param(path: Path):
    why = KNOWN_SHARED.get(_rel(path))
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=why)] if why else []
    return pytest.param(path, id=_rel(path), marks=marks)


def test_the_guard_finds_the_modules_that_declare():
    assert {_rel(p) for p in DECLARING} >= {"invariants/moe.py", "invariants/labels.py", "invariants/losses.py"}
    assert set(KNOWN_SHARED) <= {_rel(p) for p in DECLARING}, "a KNOWN_SHARED module no longer declares"


@pytest.mark.parametrize("path", [_param(p) for p in DECLARING])
def test_no_relation_calls_a_library_function_it_must_not(path):
    found = scan.violations(path, ROOT, PACKAGE, DECLARING[path])
    assert not found, "shared oracles:\n" + "\n".join(v.message() for v in found)


def test_every_module_holding_relations_declares_its_forbidden_oracles():
    names = set(RELATIONS)
    missing = {_rel(p): why for p in scan.modules(ROOT) if p not in DECLARING and _rel(p) not in NOT_YET
               and (why := scan.holds_relations(p, names)) and _rel(p).startswith(("invariants/", "train/", "judge/"))}
    assert not missing, ("modules that hold relations without FORBIDDEN_ORACLES (relation -> dotted names of the "
                         "library functions it must not call; () where it computes no expected value): "
                         + "; ".join(f"{m} ({', '.join(w)})" for m, w in sorted(missing.items())))


def test_allowlist_is_current():
    names = set(RELATIONS)
    for rel, why in NOT_YET.items():
        path = ROOT / rel
        assert path.is_file(), f"NOT_YET lists {rel}, which is gone: take it out"
        assert path not in DECLARING, f"{rel} declares FORBIDDEN_ORACLES now: take it out of NOT_YET ({why})"
        assert scan.holds_relations(path, names), f"{rel} holds no relation any more: take it out of NOT_YET"


# -- the guard can fail: planted modules ---------------------------------------------------------------

BALANCE = "transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func"
LOSS = "trl.trainer.dpo_trainer.DPOTrainer._compute_loss"
SOFTMAX = "trl.trainer.utils.selective_log_softmax"
DECLARE = (f"FORBIDDEN_ORACLES = {{'planted.aux': ({BALANCE!r},), 'planted.dpo': ({LOSS!r},), "
           f"'planted.logps': ({SOFTMAX!r},)}}\n")

PLANTED = {
    "from-import": (f"from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func as lb\n"
                    "def f(x):\n    return lb(x)\n", BALANCE),
    "attribute-chain": ("import transformers\ndef f(x):\n    return "
                        "transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func(x)\n", BALANCE),
    "module-alias": ("from transformers.models.mixtral import modeling_mixtral as mm\n"
                     "def f(x):\n    return mm.load_balancing_loss_func(x)\n", BALANCE),
    "getattr-literal": ("import transformers.models.mixtral.modeling_mixtral as mm\n"
                        "def f(x):\n    return getattr(mm, 'load_balancing_loss_func')(x)\n", BALANCE),
    "sys-modules": ("import sys\ndef f(model, x):\n"
                    "    return sys.modules[type(model).__module__].load_balancing_loss_func(x)\n", BALANCE),
    "import-module": ("import importlib\ndef f(x):\n    return importlib.import_module("
                      "'transformers.models.mixtral.modeling_mixtral').load_balancing_loss_func(x)\n", BALANCE),
    "dynamic-import-module": ("from importlib import import_module\ndef f(name, x):\n"
                              "    return import_module(name).load_balancing_loss_func(x)\n", BALANCE),
    "vars-lookup": ("import transformers.models.mixtral.modeling_mixtral as mm\n"
                    "def f(x):\n    return vars(mm)['load_balancing_loss_func'](x)\n", BALANCE),
    "re-exported": ("from trl.trainer.grpo_trainer import selective_log_softmax\n", SOFTMAX),
    "method-of-a-local": ("def f(trainer, model, inputs):\n    return trainer._compute_loss(model, inputs)\n", LOSS),
}


def plant(tmp_path: Path, body: str, name: str = "relation.py") -> tuple[Path, Path]:
    root = tmp_path / "planted"
    root.mkdir(exist_ok=True)
    (root / "__init__.py").write_text("")
    path = root / name
    path.write_text(textwrap.dedent(body))
    scan.parse.cache_clear()
    return root, path


@pytest.mark.parametrize("form", sorted(PLANTED))
def test_a_planted_module_reaching_a_forbidden_function_fails_the_guard(tmp_path, form):
    body, forbidden = PLANTED[form]
    root, path = plant(tmp_path, DECLARE + body)
    declared = scan.declaring(root, "planted")
    assert declared == {path: scan.declared(path, root, "planted")}
    found = scan.violations(path, root, "planted", declared[path])
    assert [v.forbidden for v in found][:1] == [forbidden], [v.message() for v in found]
    message = found[0].message()
    assert "planted/relation.py:" in message and repr({BALANCE: "planted.aux", LOSS: "planted.dpo",
                                                         SOFTMAX: "planted.logps"}[forbidden]) in message
    assert forbidden in message


def test_the_suites_own_formula_and_unrelated_attributes_pass(tmp_path):
    """A relation that computes its expectation itself: a local function of the forbidden name, a tensor
    method, a field called like a method's last part (`point.step`), the library's class imported for a type."""
    root, path = plant(tmp_path, DECLARE + textwrap.dedent("""
        import torch
        from trl.trainer.dpo_trainer import DPOTrainer

        def load_balancing_loss_func(router_logits, n, k):
            return torch.softmax(router_logits, -1).mean()

        def f(trainer, logits, point):
            assert isinstance(trainer, DPOTrainer)
            return load_balancing_loss_func(logits, 4, 2) + logits.std() + point.step + trainer._compute_loss
        """))
    assert scan.violations(path, root, "planted", scan.declared(path, root, "planted")) == []


def test_an_imported_declaration_scans_the_importing_module(tmp_path):
    root, defs = plant(tmp_path, DECLARE, "definitions.py")
    _, rel = plant(tmp_path, "from planted.definitions import FORBIDDEN_ORACLES\n"
                             "def f(trainer, m, x):\n    return trainer._compute_loss(m, x)\n")
    declared = scan.declaring(root, "planted")
    assert set(declared) == {defs, rel}
    assert [v.forbidden for v in scan.violations(rel, root, "planted", declared[rel])] == [LOSS]


@pytest.mark.parametrize("body, error", [
    ("FORBIDDEN_ORACLES = {'planted.aux': 'transformers.f'}\n", "must be a tuple"),
    ("FORBIDDEN_ORACLES = {'planted.aux': ('load_balancing_loss_func',)}\n", "is not a dotted name"),
    ("FORBIDDEN_ORACLES = make()\n", "must be a literal"),
    ("from planted.nowhere import FORBIDDEN_ORACLES\n", "not in the tree"),
])
def test_a_declaration_that_cannot_be_read_is_an_error_naming_the_file(tmp_path, body, error):
    root, path = plant(tmp_path, body)
    with pytest.raises(scan.DeclarationError, match=error) as info:
        scan.declared(path, root, "planted")
    assert str(path) in str(info.value)


def test_a_module_holding_relations_without_the_constant_is_found(tmp_path):
    root, path = plant(tmp_path, "from suite.train.backends.base import TrainerCheck\n"
                                 "CHECKS = (TrainerCheck('x', lambda *a: None),)\n", "checks.py")
    _, measures = plant(tmp_path, "def m(compare):\n    return compare('grad_accum.loss', 1.0, 1.0)\n", "runs.py")
    assert scan.holds_relations(path, set(RELATIONS)) == ["builds TrainerCheck objects"]
    assert scan.holds_relations(measures, set(RELATIONS)) == ["measures grad_accum.loss"]
    assert path not in scan.declaring(root, "planted")
