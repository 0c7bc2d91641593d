"""Load `cases/*.yaml`: validate every value, apply the shared defaults, expand each entry into cases.

Every error names the file and the field; nothing downstream sees an unchecked string.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from suite.errors import CaseError, not_utf8
from suite.matrix import yamltext
from suite.matrix.axes import FAMILY_MODEL_TYPE
from suite.matrix.rules import validate_combination
from suite.matrix.spec import (
    FEATURES,
    FORMATS,
    LOSSES,
    METHODS,
    SIZES,
    TIERS,
    TINY_ARCHS,
    BenchSpec,
    Case,
    CheckSpec,
    LoraSpec,
    ModelSpec,
    Training,
)
from suite.matrix.spec import DEFAULT_TRAINER
from suite.matrix.support import Support
from suite.paths import display

_SECTION = {"training": Training, "lora": LoraSpec, "checks": CheckSpec, "benchmark": BenchSpec}
_MODEL_KEYS = {f.name for f in fields(ModelSpec)} - {"name", "config_sha256"}
_ENTRY_KEYS = {"name", "models", "trainers", "methods", "features", "datasets", "training", "lora", "checks",
               "benchmark", "timeout_s", "option", "tier"}
_DEFAULT_KEYS = {"training", "lora", "checks", "benchmark", "timeout_s", "by_size", "by_method"}


def _read_yaml(path: Path) -> dict:
    try:
        doc = yamltext.load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CaseError(display(path), "(document)", not_utf8(exc)) from None
    except OSError as exc:
        raise CaseError(display(path), "(document)", f"cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(document)"
        raise CaseError(display(path), where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise CaseError(display(path), "(document)", f"must be a mapping, got {type(doc).__name__}")
    unknown = set(doc) - {"defaults", "models", "matrix"}
    if unknown:
        raise CaseError(display(path), sorted(unknown)[0], "unknown top-level key; known: defaults, models, matrix")
    return doc


def _coerce(file: str, where: str, value: Any, default: Any) -> Any:
    """Check a value against the type of its default (ints for ints, numbers for floats...)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # YAML reads 3e-3 as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, tuple):  # extra or target_modules
        ok = isinstance(value, (dict, list, str))
    else:
        ok = isinstance(value, str)
    if not ok:
        raise CaseError(file, where, f"expected {type(default).__name__}, got {value!r}")
    return value


# Values the stack would refuse (or silently misread) later, refused when the file loads:
# (section, field) -> (holds?, what the value must be). Every other number must not be negative.
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                 "warmup_stable_decay")  # transformers' SchedulerType
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_RULES: dict[tuple[str, str], tuple[Any, str]] = {
    ("LoraSpec", "r"): (lambda v: v >= 1, "must be at least 1 (peft refuses a rank of 0)"),
    ("LoraSpec", "alpha"): (lambda v: v > 0, "must be positive (the adapter's scale is alpha / r)"),
    ("LoraSpec", "dropout"): (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("Training", "learning_rate"): (lambda v: v > 0, "must be positive"),
    ("Training", "neftune_alpha"): (lambda v: v > 0, "must be positive"),
    ("Training", "lr_scheduler"): (lambda v: v in LR_SCHEDULERS, f"must be one of {', '.join(LR_SCHEDULERS)}"),
    ("Training", "precision"): (lambda v: v in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
    ("CheckSpec", "loss_window"): (lambda v: v >= 1, "must be at least 1"),
    ("CheckSpec", "loss_margin"): (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("CheckSpec", "curve_drift"): (lambda v: v > 0, "must be positive"),
}


def _section(file: str, where: str, raw: Any, base: Any) -> Any:
    if not isinstance(raw, dict):
        raise CaseError(file, where, f"must be a mapping, got {raw!r}")
    known = {f.name: f for f in fields(base)}
    updates = {}
    for key, value in raw.items():
        if key not in known:
            raise CaseError(file, f"{where}.{key}", f"unknown field; known: {', '.join(known)}")
        current = getattr(base, key)
        if key == "extra":
            if not isinstance(value, dict):
                raise CaseError(file, f"{where}.extra", "must be a mapping of SFTConfig fields")
            updates[key] = tuple(sorted({**dict(current), **value}.items()))
        elif key == "target_modules":
            if not isinstance(value, (str, list)) or (isinstance(value, list) and not all(isinstance(v, str) for v in value)):
                raise CaseError(file, f"{where}.{key}", "must be a string or a list of module names")
            updates[key] = value if isinstance(value, str) else tuple(value)
        elif key in ("target_parameters", "unquantized"):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise CaseError(file, f"{where}.{key}", "must be a list of parameter names (e.g. mlp.experts.down_proj)")
            updates[key] = tuple(value)
        else:
            updates[key] = _coerce(file, f"{where}.{key}", value, current)
    for key, value in updates.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise CaseError(file, f"{where}.{key}", f"must not be negative, got {value}")
        rule = _RULES.get((type(base).__name__, key))
        if rule is not None and not rule[0](value):
            raise CaseError(file, f"{where}.{key}", f"{rule[1]}, got {value!r}")
    return replace(base, **updates)


@dataclass
class _Defaults:
    sections: dict[str, Any] = field(default_factory=lambda: {k: cls() for k, cls in _SECTION.items()})
    timeout_s: float = 900.0
    by_size: dict[str, dict] = field(default_factory=dict)
    by_method: dict[str, dict] = field(default_factory=dict)
    file: str = "(built-in)"


def _apply(file: str, where: str, raw: dict, sections: dict, timeout: float) -> tuple[dict, float]:
    sections = dict(sections)
    for key, value in raw.items():
        if key in _SECTION:
            sections[key] = _section(file, f"{where}{key}", value, sections[key])
        elif key == "timeout_s":
            timeout = _coerce(file, f"{where}timeout_s", value, 1.0)
    return sections, timeout


def _load_defaults(file: str, raw: Any, into: _Defaults) -> None:
    if not isinstance(raw, dict):
        raise CaseError(file, "defaults", "must be a mapping")
    for key in raw:
        if key not in _DEFAULT_KEYS:
            raise CaseError(file, f"defaults.{key}", f"unknown field; known: {', '.join(sorted(_DEFAULT_KEYS))}")
    into.sections, into.timeout_s = _apply(file, "defaults.", raw, into.sections, into.timeout_s)
    for axis, known in (("by_size", SIZES), ("by_method", METHODS)):
        for name, over in (raw.get(axis) or {}).items():
            if name not in known:
                raise CaseError(file, f"defaults.{axis}.{name}", f"unknown value; known: {', '.join(known)}")
            if not isinstance(over, dict) or set(over) - {*_SECTION, "timeout_s"}:
                raise CaseError(file, f"defaults.{axis}.{name}",
                                f"may set {', '.join(_SECTION)}, timeout_s only")
            _apply(file, f"defaults.{axis}.{name}.", over, into.sections, into.timeout_s)  # validate now
            getattr(into, axis)[name] = {"file": file, **over}
    into.file = file


def _load_model(file: str, name: str, raw: Any, directory: Path) -> ModelSpec:
    where = f"models.{name}"
    if not isinstance(raw, dict):
        raise CaseError(file, where, "must be a mapping")
    for key in raw:
        if key not in _MODEL_KEYS:
            raise CaseError(file, f"{where}.{key}", f"unknown field; known: {', '.join(sorted(_MODEL_KEYS))}")
    for key in ("arch", "hub_id", "env", "path", "config"):
        if key in raw and not isinstance(raw[key], str):
            raise CaseError(file, f"{where}.{key}", f"must be a string, got {raw[key]!r}")
    size = raw.get("size")
    if size not in SIZES:
        raise CaseError(file, f"{where}.size", f"must be one of {', '.join(SIZES)}, got {size!r}")
    if size == "tiny":
        if raw.get("arch") not in TINY_ARCHS:
            raise CaseError(file, f"{where}.arch", f"a tiny model needs arch, one of {', '.join(TINY_ARCHS)}; got {raw.get('arch')!r}")
        if "config" in raw:
            raise CaseError(file, f"{where}.config", "tiny models are built from suite/train/models.py's TINY_ARCHS")
    elif "config" in raw:
        if raw.keys() & {"hub_id", "env", "path"}:
            raise CaseError(file, f"{where}.config", "random weights from a config take no hub_id, env or path")
        raw = {**raw, **_read_model_config(file, f"{where}.config", directory / raw["config"], raw.get("arch"))}
    elif not raw.get("hub_id") and not raw.get("path"):
        raise CaseError(file, f"{where}.hub_id", "a 7b model needs hub_id (and env), path, or config")
    return ModelSpec(name=name, **raw)


def _read_model_config(file: str, where: str, path: Path, arch: str | None) -> dict:
    """The config file of a 7B-shaped model: where it is and the digest of what it says."""
    try:
        text = path.read_bytes().decode("utf-8")
        doc = json.loads(text)
    except OSError as exc:
        raise CaseError(file, where, f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CaseError(file, where, f"{path}: {not_utf8(exc)}") from None
    except json.JSONDecodeError as exc:
        raise CaseError(file, where, f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("model_type"), str):
        raise CaseError(file, where, f"{path} has no model_type (a transformers config.json is expected)")
    # arch may name the config's model_type or a family of the tiny matrix whose model_type it is (`gemma3` for a
    # gemma3_text config): a large row then carries its family's marker and its release needs
    if arch is not None and doc["model_type"] not in (arch, FAMILY_MODEL_TYPE.get(arch)):
        raise CaseError(file, where, f"{path} describes a {doc['model_type']!r} model, not arch {arch!r}")
    return {"config": str(path.resolve()), "config_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
            "arch": arch or doc["model_type"]}


def _as_list(file: str, where: str, value: Any) -> list:
    if isinstance(value, (str, dict)):
        return [value]
    if not isinstance(value, list) or not value:
        raise CaseError(file, where, f"must be a non-empty list, got {value!r}")
    return value


def _parse_dataset(file: str, where: str, item: Any) -> tuple[str, str]:
    if isinstance(item, dict):
        if set(item) - {"format", "loss"}:
            raise CaseError(file, where, "a dataset mapping takes format and loss only")
        fmt, loss = item.get("format"), item.get("loss", "auto")
    elif isinstance(item, str):
        fmt, _, loss = item.partition(":")
        loss = loss or "auto"
    else:
        raise CaseError(file, where, f"must be a format name or a mapping, got {item!r}")
    if fmt not in FORMATS:
        raise CaseError(file, f"{where}.format", f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}")
    if loss not in LOSSES:
        raise CaseError(file, f"{where}.loss", f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    return fmt, loss


def _parse_features(file: str, where: str, item: Any) -> tuple[str, ...]:
    if isinstance(item, str):
        item = [] if item in ("base", "") else item.split("+")
    if not isinstance(item, list):
        raise CaseError(file, where, f"must be a list of features or 'a+b', got {item!r}")
    for feat in item:
        if feat not in FEATURES:
            raise CaseError(file, where, f"unknown feature {feat!r}; known: {', '.join(FEATURES)}")
    if len(set(item)) != len(item):
        raise CaseError(file, where, f"feature listed twice in {item!r}")
    return tuple(f for f in FEATURES if f in item)


_OPTION = re.compile(r"[a-z][a-z0-9_]*:[A-Za-z0-9_.+-]+(,[a-z][a-z0-9_]*:[A-Za-z0-9_.+-]+)*")


def _parse_option(file: str, where: str, value: Any) -> str:
    """The option label a case's id ends with (`loss_type:ipo,label_smoothing:0.1`; no `=`, which pytest's -k refuses): what its training.extra sets
    that its other axes do not name (a file name and a marker expression must be able to hold it)."""
    if value == "":
        return ""
    if not isinstance(value, str) or not _OPTION.fullmatch(value):
        raise CaseError(file, where, f"must be name:value pairs joined by commas (letters, digits, _ . + -), "
                                     f"got {value!r}")
    return value


def _parse_tier(file: str, where: str, value: Any) -> str:
    """The tier a row's cases are in (spec.TIERS); a row that says none is in the main tier."""
    if value not in TIERS:
        raise CaseError(file, where, f"unknown tier {value!r}; known: {', '.join(TIERS)}")
    return value


def _expand(file: str, idx: int, entry: Any, models: dict[str, ModelSpec], defaults: _Defaults,
            support: Support) -> list[Case]:
    where = f"matrix[{idx}]"
    if not isinstance(entry, dict):
        raise CaseError(file, where, "must be a mapping")
    for key in entry:
        if key not in _ENTRY_KEYS:
            raise CaseError(file, f"{where}.{key}", f"unknown field; known: {', '.join(sorted(_ENTRY_KEYS))}")
    for key in ("models", "methods"):
        if key not in entry:
            raise CaseError(file, f"{where}.{key}", "required")
    model_names = _as_list(file, f"{where}.models", entry["models"])
    for j, name in enumerate(model_names):
        if name not in models:
            raise CaseError(file, f"{where}.models[{j}]", f"unknown model {name!r}; declared: {', '.join(sorted(models))}")
    methods = _as_list(file, f"{where}.methods", entry["methods"])
    for j, m in enumerate(methods):
        if m not in METHODS:
            raise CaseError(file, f"{where}.methods[{j}]", f"unknown method {m!r}; known: {', '.join(METHODS)}")
    trainers = _as_list(file, f"{where}.trainers", entry.get("trainers", [DEFAULT_TRAINER]))
    for j, t in enumerate(trainers):
        if t not in support.trainers:
            raise CaseError(file, f"{where}.trainers[{j}]",
                            f"unknown trainer {t!r}; known: {', '.join(support.trainers)}")
    raw_feats = entry.get("features", [[]])
    feats = [_parse_features(file, f"{where}.features[{j}]", f)
             for j, f in enumerate(raw_feats if isinstance(raw_feats, list) else [raw_feats])]
    datasets = [_parse_dataset(file, f"{where}.datasets[{j}]", d)
                for j, d in enumerate(_as_list(file, f"{where}.datasets", entry.get("datasets", ["text"])))]
    option = _parse_option(file, f"{where}.option", entry.get("option", ""))
    tier = _parse_tier(file, f"{where}.tier", entry.get("tier", TIERS[0]))
    cases = []
    for name, trainer, method, feat, (fmt, loss) in itertools.product(model_names, trainers, methods, feats, datasets):
        model = models[name]
        sections, timeout = dict(defaults.sections), defaults.timeout_s
        for layer in (defaults.by_method.get(method), defaults.by_size.get(model.size)):
            if layer:
                sections, timeout = _apply(layer["file"], "defaults.", layer, sections, timeout)
        sections, timeout = _apply(file, f"{where}.", entry, sections, timeout)
        case = Case(model=model, **METHODS[method].axes(), features=feat, dataset=fmt, loss=loss,
                    training=sections["training"], lora=sections["lora"], checks=sections["checks"],
                    benchmark=sections["benchmark"], timeout_s=timeout, source=file, trainer=trainer, option=option,
                    tier=tier)
        named = {pair.split(":")[0] for pair in option.split(",")} - set(dict(case.training.extra)) if option else set()
        if named:
            raise CaseError(file, f"{where}.option", f"names {', '.join(sorted(named))}, which training.extra does not set")
        problem = validate_combination(case, support)
        if problem:
            raise CaseError(file, where, f"impossible combination {case.id}: {problem}")
        cases.append(case)
    return cases


def load_cases(directory: str | Path, mode: str, support: Support) -> list[Case]:
    """Every case declared under `directory`, validated against the matrix's rules and what `support`
    (the backends) can train, in file order (suite/cases.py hands in the suite's backends)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CaseError(str(directory), "(directory)", "case directory not found")
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    docs = [(display(p), _read_yaml(p)) for p in files]
    defaults = _Defaults()
    models: dict[str, ModelSpec] = {}
    model_file: dict[str, str] = {}
    for file, doc in docs:
        if "defaults" in doc:
            if defaults.file != "(built-in)":
                raise CaseError(file, "defaults", f"already declared in {defaults.file}; declare defaults once")
            _load_defaults(file, doc["defaults"], defaults)
        for name, raw in (doc.get("models") or {}).items():
            if name in models:
                raise CaseError(file, f"models.{name}", f"already declared in {model_file[name]}")
            models[name], model_file[name] = _load_model(file, name, raw, directory), file
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for file, doc in docs:
        matrix = doc.get("matrix") or []
        if not isinstance(matrix, list):
            raise CaseError(file, "matrix", "must be a list of entries")
        for idx, entry in enumerate(matrix):
            for case in _expand(file, idx, entry, models, defaults, support):
                if case.id in seen:
                    raise CaseError(file, f"matrix[{idx}]", f"case {case.id} already declared in {seen[case.id]}")
                seen[case.id] = file
                cases.append(case.with_mode(mode))
    # tiny rows first (they are the ones that run everywhere), file order otherwise
    return sorted(cases, key=lambda c: SIZES.index(c.model.size))
