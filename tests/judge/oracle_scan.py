"""The guard against shared oracles (issue 36), as functions over source text: which modules of a tree
declare `FORBIDDEN_ORACLES: dict[str, tuple[str, ...]]` (relation name -> dotted names of the library
functions that relation must not call), what each module references, and which references reach a
forbidden name. tests/judge/test_oracles.py runs it over suite/ and over planted modules.

A module is read with `ast`, never imported (the fast loop imports no trl). What counts as a reference:
an import (`import a.b`, `from a.b import c as d`); an attribute chain on an imported name; `getattr` /
`inspect.getattr_static` with a literal name; `vars(m)["f"]` / `m.__dict__["f"]`; `sys.modules["a.b"]`,
`sys.modules.get(...)`, `importlib.import_module("a.b")`, `__import__("a.b")` and `pydoc.locate("a.b.f")`.
A module found at run time (`sys.modules[type(x).__module__]`, `import_module(name)`) is unknown: any
attribute of it named as a forbidden function's last part matches. A call of a local object's attribute
(`trainer._compute_loss(...)`) matches a forbidden *method* (a name whose parent starts upper-case, a
class) by its last part, since an instance's class is not known statically; a mere read of a local's
attribute does not (`point.step` is no `AdamW.step`). A name of the same library
with the same last part matches too (`trl.trainer.grpo_trainer.selective_log_softmax` is
`trl.trainer.utils.selective_log_softmax` re-exported).

The whole module is scanned for every relation it declares (a relation's helpers live beside it); the
suite modules it imports are not followed (a fault module may wrap a library function on purpose).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CONSTANT = "FORBIDDEN_ORACLES"
DYNAMIC = "?"  # a module found at run time
LOCAL = "~"  # an object of the module's own (a parameter, a local), its class unknown
GETTERS = ("getattr", "inspect.getattr_static", "builtins.getattr")
IMPORTERS = ("importlib.import_module", "__import__", "builtins.__import__", "pydoc.locate", "sys.modules.get")


class DeclarationError(Exception):
    """A FORBIDDEN_ORACLES that cannot be read: the message names the file and the relation."""


@dataclass(frozen=True)
class Reference:
    name: str  # a dotted name, or "?.f" (a module found at run time), or "~.f" (an attribute of a local)
    line: int
    where: str  # the enclosing function or class, or "<module>"
    text: str  # the expression as written


@dataclass(frozen=True)
class Violation:
    path: str
    relation: str
    forbidden: str
    ref: Reference

    def message(self) -> str:
        return (f"{self.path}:{self.ref.line} (in {self.ref.where}): relation {self.relation!r} must not call "
                f"{self.forbidden} (its FORBIDDEN_ORACLES says so), but the module references it: `{self.ref.text}`")


@lru_cache(maxsize=None)
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def module_name(path: Path, root: Path, package: str) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([package, *parts])


def module_path(name: str, root: Path, package: str) -> Path | None:
    """The file of a module of the tree by its dotted name (None: not in the tree)."""
    if name != package and not name.startswith(package + "."):
        return None
    base = root.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _evaluate(node: ast.expr, env: dict[str, object], where: str) -> object:
    """A literal built of dicts, tuples, lists, strings and the module's earlier literal constants (+ joins)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        out: list = []
        for elt in node.elts:
            starred = isinstance(elt, ast.Starred)
            out += list(_evaluate(elt.value, env, where)) if starred else [_evaluate(elt, env, where)]
        return tuple(out)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_evaluate(k, env, where): _evaluate(v, env, where) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _evaluate(node.left, env, where) + _evaluate(node.right, env, where)
    if isinstance(node, ast.JoinedStr):  # f"transformers.models.{m}.modeling_{m}.f" over a literal loop
        return "".join(str(_evaluate(v.value if isinstance(v, ast.FormattedValue) else v, env, where))
                       for v in node.values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("tuple", "list") \
            and len(node.args) == 1 and not node.keywords:
        return tuple(_evaluate(node.args[0], env, where))
    if isinstance(node, (ast.GeneratorExp, ast.ListComp)) and len(node.generators) == 1 \
            and isinstance(node.generators[0].target, ast.Name) and not node.generators[0].ifs:
        loop = node.generators[0]
        return tuple(_evaluate(node.elt, {**env, loop.target.id: item}, where)
                     for item in _evaluate(loop.iter, env, where))
    raise DeclarationError(f"{where}: {CONSTANT} must be a literal (dicts, tuples, strings, the module's literal "
                           f"constants); cannot read `{ast.unparse(node)}`")


def _assigned(tree: ast.Module, where: str) -> dict | None:
    """The module's own FORBIDDEN_ORACLES, evaluated (None: it assigns none)."""
    env: dict[str, object] = {}
    for stmt in tree.body:
        target, value = None, None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            target, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            target, value = stmt.target.id, stmt.value
        if target is None:
            continue
        if target == CONSTANT:
            return _validated(_evaluate(value, env, where), where)
        try:
            env[target] = _evaluate(value, env, where)
        except DeclarationError:
            pass  # a constant that is no literal: FORBIDDEN_ORACLES may not use it
    return None


def _validated(value: object, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise DeclarationError(f"{where}: {CONSTANT} must be a dict (relation name -> dotted names)")
    for relation, names in value.items():
        if not isinstance(relation, str) or not relation:
            raise DeclarationError(f"{where}: {CONSTANT} key {relation!r} is not a relation name")
        if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
            raise DeclarationError(f"{where}: {CONSTANT}[{relation!r}] must be a tuple of dotted names")
        for name in names:
            if len(name.split(".")) < 2 or not all(p.isidentifier() for p in name.split(".")):
                raise DeclarationError(f"{where}: {CONSTANT}[{relation!r}]: {name!r} is not a dotted name "
                                       "(package.module.function)")
    return value


def declared(path: Path, root: Path, package: str) -> dict[str, tuple[str, ...]] | None:
    """A module's FORBIDDEN_ORACLES: its own, or one it imports from another module of the tree."""
    where = str(path)
    if CONSTANT not in path.read_text():
        return None
    tree = parse(path)
    own = _assigned(tree, where)
    if own is not None:
        return own
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and any(a.name == CONSTANT for a in stmt.names):
            origin = module_path(_absolute(stmt, module_name(path, root, package)), root, package)
            if origin is None:
                raise DeclarationError(f"{where}: imports {CONSTANT} from {stmt.module}, which is not in the tree")
            found = _assigned(parse(origin), str(origin))
            if found is None:
                raise DeclarationError(f"{where}: imports {CONSTANT} from {origin}, which assigns none")
            return found
    return None


def _absolute(stmt: ast.ImportFrom, module: str) -> str:
    if not stmt.level:
        return stmt.module or ""
    base = module.split(".")[:-stmt.level]
    return ".".join([*base, *([stmt.module] if stmt.module else [])])


def aliases(tree: ast.Module, module: str) -> dict[str, str]:
    """Every name an import binds anywhere in the module -> the dotted name it stands for."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module)
            for a in node.names:
                if a.name != "*":
                    out[a.asname or a.name] = f"{base}.{a.name}"
    return out


class _Refs(ast.NodeVisitor):
    """The references of one module (module docstring above: what counts)."""

    def __init__(self, names: dict[str, str], module: str):
        self.names, self.module, self.stack, self.found = names, module, ["<module>"], []

    def resolve(self, node: ast.expr) -> str | None:
        """The dotted name an expression stands for, "?" / "?.x" (a run-time module), "~.x" (a local's), or None."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            if base is None:
                local = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                return None if local else f"{LOCAL}.{node.attr}"
            return f"{base}.{node.attr}"
        if isinstance(node, ast.Subscript):
            return self._subscript(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        return None

    def _subscript(self, node: ast.Subscript) -> str | None:
        key = node.slice.value if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str) else None
        base = node.value
        if self.resolve(base) == "sys.modules":
            return key or DYNAMIC
        if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "vars" and base.args \
                and key:
            return f"{self.resolve(base.args[0]) or DYNAMIC}.{key}"
        if isinstance(base, ast.Attribute) and base.attr == "__dict__" and key:
            return f"{self.resolve(base.value) or DYNAMIC}.{key}"
        return None

    def _call(self, node: ast.Call) -> str | None:
        func = self.resolve(node.func) or (node.func.id if isinstance(node.func, ast.Name) else None)
        if func in GETTERS and len(node.args) >= 2:
            name = node.args[1]
            literal = isinstance(name, ast.Constant) and isinstance(name.value, str)
            return f"{self.resolve(node.args[0]) or DYNAMIC}.{name.value}" if literal else None
        if func in IMPORTERS and node.args:
            first = node.args[0]
            return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else DYNAMIC
        return None

    def _add(self, name: str | None, node: ast.AST) -> None:
        if name and name != DYNAMIC:
            self.found.append(Reference(name, getattr(node, "lineno", 0), self.stack[-1], ast.unparse(node)))

    def _scope(self, node: ast.AST) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self._add(a.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(node, self.module)
        for a in node.names:
            if a.name not in ("*", CONSTANT):
                self._add(f"{base}.{a.name}", node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self.resolve(node)
        if name and not name.startswith(LOCAL + "."):  # a local's attribute counts where it is called
            self._add(name, node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self._add(self._call(node), node)
        if isinstance(node.func, ast.Attribute) and (name := self.resolve(node.func)) and name.startswith(LOCAL + "."):
            self._add(name, node.func)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self._add(self._subscript(node), node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._add(self.names.get(node.id), node)


def references(path: Path, root: Path, package: str) -> list[Reference]:
    module = module_name(path, root, package)
    tree = parse(path)
    visitor = _Refs(aliases(tree, module), module)
    visitor.visit(tree)
    return visitor.found


def matches(ref: str, forbidden: str) -> bool:
    """Whether a reference (Reference.name) reaches a forbidden dotted name (the rules: module docstring)."""
    parts, leaf = forbidden.split("."), forbidden.split(".")[-1]
    if ref.startswith(DYNAMIC + "."):
        return ref.split(".")[-1] == leaf
    if ref.startswith(LOCAL + "."):
        return ref.split(".")[-1] == leaf and parts[-2][:1].isupper()
    if ref == forbidden or ref.startswith(forbidden + "."):
        return True
    got = ref.split(".")
    return got[0] == parts[0] and leaf in got[1:]


def violations(path: Path, root: Path, package: str, oracles: dict[str, tuple[str, ...]]) -> list[Violation]:
    """Every reference of the module that reaches a name one of its relations must not call."""
    refs = references(path, root, package)
    out, seen = [], set()
    for relation, names in oracles.items():
        for forbidden in names:
            for ref in refs:
                key = (relation, forbidden, ref.line)
                if key not in seen and matches(ref.name, forbidden):
                    seen.add(key)
                    out.append(Violation(str(path.relative_to(root.parent)), relation, forbidden, ref))
    return out


def modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def declaring(root: Path, package: str) -> dict[Path, dict[str, tuple[str, ...]]]:
    """Every module of the tree that declares FORBIDDEN_ORACLES (its own or imported), with it."""
    out = {}
    for path in modules(root):
        found = declared(path, root, package)
        if found is not None:
            out[path] = found
    return out


def string_literals(path: Path) -> set[str]:
    """The module's string constants, docstrings and FORBIDDEN_ORACLES' own left out."""
    tree = parse(path)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body \
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            skip.add(id(node.body[0].value))
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(target, ast.Name) and target.id == CONSTANT:
            skip.update(id(n) for n in ast.walk(node))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in skip}


def holds_relations(path: Path, relation_names: set[str]) -> list[str]:
    """Why a module holds relations (empty: it holds none): it builds a TrainerCheck, or measures a relation of
    suite/invariants/relations.py's RELATIONS (`compare("name", ...)`, `RELATIONS["name"]`)."""
    text = path.read_text()
    if "TrainerCheck" not in text and not any(name in text for name in relation_names):
        return []
    why, measured = [], set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Call) and _called(node.func) == "TrainerCheck":
            why.append("builds TrainerCheck objects")
        elif isinstance(node, ast.Call) and _called(node.func) == "compare" and node.args:
            measured.add(_literal(node.args[0]))
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "RELATIONS":
            measured.add(_literal(node.slice))
    named = sorted(relation_names & measured)
    if named:
        why.append("measures " + ", ".join(named[:3]) + (" ..." if len(named) > 3 else ""))
    return list(dict.fromkeys(why))


def _called(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
