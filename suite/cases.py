"""The case matrix: load `cases/*.yaml`, validate, expand into frozen cases with stable ids.

A case is model x method x features x dataset (format and loss) plus training settings.
Every error names the file and the field; nothing downstream sees an unchecked string.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from suite.errors import CaseError, not_utf8

METHODS = ("full", "lora", "qlora", "unsloth")
ADAPTER_METHODS = ("lora", "qlora", "unsloth")
# Canonical order: ids list features in this order whatever the case file says.
FEATURES = ("packing", "neftune", "gradient_checkpointing", "flash_attn", "sdpa", "eager", "ddp", "fsdp")
ATTENTION = {"flash_attn": "flash_attention_2", "sdpa": "sdpa", "eager": "eager"}
# Data-parallel features: the case is launched as WORLD_SIZE processes (suite/distributed.py).
DISTRIBUTED = ("ddp", "fsdp")
WORLD_SIZE = 2
SIZES = ("tiny", "7b")
FORMATS = ("text", "messages", "prompt_completion", "conversational_pc")
LOSSES = ("auto", "full", "completion_only", "assistant_only")
MODES = ("regression", "benchmark")
TINY_ARCHS = ("llama", "qwen2", "mistral")
CONVERSATIONAL = ("messages", "conversational_pc")
PROMPT_FORMATS = ("prompt_completion", "conversational_pc")

# Every marker a case can carry; registered so that --strict-markers catches typos.
MARKERS: dict[str, str] = {
    **{m: f"method: {m}" for m in METHODS},
    **{f: f"feature: {f}" for f in FEATURES},
    **{s: f"model size: {s}" for s in SIZES},
    "large": "a 7B-class model (same as 7b)",
    "gpu": "needs a CUDA GPU",
    "multigpu": f"needs {WORLD_SIZE} CUDA GPUs (ddp, fsdp)",
    "adapter": "an adapter method (lora, qlora, unsloth)",
    **{f: f"dataset format: {f}" for f in FORMATS},
    "completion_only": "loss on the completion only",
    "assistant_only": "loss on assistant turns only",
    **{a: f"architecture: {a}" for a in TINY_ARCHS},
    "case": "a training case of the matrix (not a unit test)",
    "invariant": "a correctness invariant comparing two real runs or states (tests/invariants/)",
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    size: str
    arch: str | None = None  # tiny models: the architecture built from a config
    hub_id: str | None = None  # real models: the hub id the weights are known by
    env: str | None = None  # environment variable naming a local directory
    path: str | None = None  # an explicit local directory
    # 7B-shaped models: random weights from this architecture config (cases/configs/*.json), for
    # machines no weights reach. The path is where this checkout keeps it (not fingerprinted);
    # the digest of its content is what the fingerprint sees.
    config: str | None = None
    config_sha256: str | None = None


@dataclass(frozen=True)
class Training:
    max_steps: int = 30
    benchmark_steps: int = 120
    learning_rate: float = 3e-3
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 64
    warmup_steps: int = 0
    lr_scheduler: str = "linear"
    weight_decay: float = 0.0
    seed: int = 0
    num_samples: int = 512
    turns: int = 1  # question/answer pairs per example: longer sequences for benchmarks of big models
    neftune_alpha: float = 5.0
    precision: str = "auto"  # auto: bf16 where the GPU supports it, else fp32
    extra: tuple[tuple[str, Any], ...] = ()  # further SFTConfig fields, checked against trl in the child


@dataclass(frozen=True)
class LoraSpec:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"


@dataclass(frozen=True)
class CheckSpec:
    loss_window: int = 5  # k: mean of the first k logged losses vs the last k
    loss_margin: float = 0.1  # the last-k mean must be below (1 - margin) x the first-k mean
    size_rtol: float = 0.02  # saved tensor bytes vs what the parameter count x dtype imply
    logits_atol: float = 1e-4  # reloaded checkpoint vs the trained model in memory
    curve_rtol: float = 1e-3  # golden loss curve: each logged loss within atol + rtol x |baseline|
    curve_atol: float = 1e-4
    # ... and the mean of (obtained - baseline) over the whole curve within this: kernel noise
    # averages out over the steps, a systematic shift of the loss does not (cases/_base.yaml)
    curve_drift: float = 1e-3


@dataclass(frozen=True)
class BenchSpec:
    warmup_steps: int = 5  # first steps left out of step-time and throughput figures


@dataclass(frozen=True)
class Case:
    model: ModelSpec
    method: str
    features: tuple[str, ...]
    dataset: str
    loss: str
    training: Training
    lora: LoraSpec
    checks: CheckSpec
    timeout_s: float
    source: str  # the case file this case was declared in
    mode: str = "regression"
    benchmark: BenchSpec = BenchSpec()

    @property
    def id(self) -> str:
        parts = [self.model.name, self.method, "+".join(self.features) or "base"]
        if self.dataset != "text" or self.loss != "auto":
            parts.append(self.dataset + ("" if self.loss == "auto" else f":{self.loss}"))
        return "/".join(parts)

    @property
    def slug(self) -> str:
        """The id as a file name."""
        return self.id.replace("/", "__").replace(":", "-")

    @property
    def is_adapter(self) -> bool:
        return self.method in ADAPTER_METHODS

    @property
    def effective_loss(self) -> str:
        if self.loss != "auto":
            return self.loss
        return "completion_only" if self.dataset in PROMPT_FORMATS else "full"

    @property
    def attention(self) -> str:
        for feat, impl in ATTENTION.items():
            if feat in self.features:
                return impl
        return "sdpa"

    @property
    def steps(self) -> int:
        return self.training.benchmark_steps if self.mode == "benchmark" else self.training.max_steps

    @property
    def distributed(self) -> str | None:
        """ddp or fsdp when the case runs as several processes, else None."""
        return next((f for f in self.features if f in DISTRIBUTED), None)

    @property
    def needs_gpu(self) -> bool:
        return (self.model.size == "7b" or self.method == "unsloth" or "flash_attn" in self.features
                or self.distributed is not None)

    @property
    def markers(self) -> tuple[str, ...]:
        marks = ["case", self.method, self.model.size, *self.features, self.dataset]
        if self.model.size == "7b":
            marks.append("large")
        if self.model.arch:
            marks.append(self.model.arch)
        if self.is_adapter:
            marks.append("adapter")
        if self.needs_gpu:
            marks.append("gpu")
        if self.distributed:
            marks.append("multigpu")
        if self.effective_loss in ("completion_only", "assistant_only"):
            marks.append(self.effective_loss)
        return tuple(dict.fromkeys(marks))

    def with_mode(self, mode: str) -> Case:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        return replace(self, mode=mode)

    def to_dict(self) -> dict:
        """The resolved case, as recorded in results (JSON-safe)."""
        d = asdict(self)
        d["training"]["extra"] = dict(self.training.extra)
        d["id"] = self.id
        if self.model.config is None:  # left out so that the other cases keep their fingerprints
            del d["model"]["config"], d["model"]["config_sha256"]
        d["steps"] = self.steps
        d["attention"] = self.attention
        d["effective_loss"] = self.effective_loss
        if self.distributed:  # only here, so that single-process cases keep their fingerprints
            d["world_size"] = WORLD_SIZE
        return d

    @property
    def fingerprint(self) -> str:
        """Hash of everything that changes what is trained; the source file and timeout do not."""
        d = self.to_dict()
        for key in ("source", "timeout_s", "checks", "benchmark"):
            d.pop(key)
        d["model"].pop("config", None)  # a local path; its content is in config_sha256
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- loading and validation

_SECTION = {"training": Training, "lora": LoraSpec, "checks": CheckSpec, "benchmark": BenchSpec}
_MODEL_KEYS = {f.name for f in fields(ModelSpec)} - {"name", "config_sha256"}
_ENTRY_KEYS = {"name", "models", "methods", "features", "datasets", "training", "lora", "checks", "benchmark",
               "timeout_s"}
_DEFAULT_KEYS = {"training", "lora", "checks", "benchmark", "timeout_s", "by_size", "by_method"}


def _read_yaml(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CaseError(_display(path), "(document)", not_utf8(exc)) from None
    except OSError as exc:
        raise CaseError(_display(path), "(document)", f"cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(document)"
        raise CaseError(_display(path), where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise CaseError(_display(path), "(document)", f"must be a mapping, got {type(doc).__name__}")
    unknown = set(doc) - {"defaults", "models", "matrix"}
    if unknown:
        raise CaseError(_display(path), sorted(unknown)[0], "unknown top-level key; known: defaults, models, matrix")
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
            raise CaseError(file, f"{where}.config", "tiny models are built from suite/models.py's TINY_ARCHS")
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
    if arch is not None and arch != doc["model_type"]:
        raise CaseError(file, where, f"{path} describes a {doc['model_type']!r} model, not arch {arch!r}")
    return {"config": str(path.resolve()), "config_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
            "arch": doc["model_type"]}


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


def validate_combination(case: Case) -> str | None:
    """Why a combination of axes cannot exist, or None."""
    attn = [f for f in case.features if f in ATTENTION]
    if len(attn) > 1:
        return f"at most one attention variant, got {' and '.join(attn)}"
    if case.loss == "assistant_only" and case.dataset not in CONVERSATIONAL:
        return f"assistant_only loss needs a conversational format ({', '.join(CONVERSATIONAL)}), not {case.dataset}"
    if case.loss == "completion_only" and case.dataset not in PROMPT_FORMATS:
        return f"completion_only loss needs a prompt-completion format ({', '.join(PROMPT_FORMATS)}), not {case.dataset}"
    if case.method == "unsloth" and {"flash_attn", "eager", "sdpa"} & set(case.features):
        return "unsloth picks its own attention kernels; do not combine it with an attention variant"
    if case.method == "unsloth" and case.model.arch == "qwen2" and (case.model.size == "tiny" or case.model.config):
        # unsloth reloads the tokenizer with AutoTokenizer, which transformers 5 resolves to Qwen2's
        # BPE class for a qwen2 directory: the suite's word-level tokenizer would be lost
        return ("unsloth with a qwen2 model built by the suite: unsloth reloads the tokenizer through "
                "AutoTokenizer, which maps a qwen2 directory to Qwen2's BPE class and loses the suite's "
                "word-level tokenizer; use a built llama or mistral model, or real Qwen2 weights")
    dist = [f for f in case.features if f in DISTRIBUTED]
    if len(dist) > 1:
        return f"at most one of {', '.join(DISTRIBUTED)}, got {' and '.join(dist)}"
    if dist and case.method == "unsloth":
        return "unsloth trains on one GPU; it cannot be combined with ddp or fsdp"
    if "fsdp" in dist and case.method == "qlora":
        return "fsdp with qlora needs bnb_4bit_quant_storage set to the compute dtype, which the suite does not set"
    if case.training.max_steps < 2 * case.checks.loss_window:
        return (f"training.max_steps ({case.training.max_steps}) must be at least 2 x checks.loss_window "
                f"({case.checks.loss_window}) for the loss check to compare first and last windows")
    if case.benchmark.warmup_steps >= case.training.max_steps - 1:
        return (f"benchmark.warmup_steps ({case.benchmark.warmup_steps}) leaves no timed step in "
                f"training.max_steps ({case.training.max_steps})")
    if case.training.benchmark_steps < case.training.max_steps:
        return "training.benchmark_steps must be at least training.max_steps"
    for key in ("batch_size", "grad_accum", "max_length", "num_samples", "turns"):
        if getattr(case.training, key) < 1:
            return f"training.{key} must be at least 1"
    return None


def _expand(file: str, idx: int, entry: Any, models: dict[str, ModelSpec], defaults: _Defaults) -> list[Case]:
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
    raw_feats = entry.get("features", [[]])
    feats = [_parse_features(file, f"{where}.features[{j}]", f)
             for j, f in enumerate(raw_feats if isinstance(raw_feats, list) else [raw_feats])]
    datasets = [_parse_dataset(file, f"{where}.datasets[{j}]", d)
                for j, d in enumerate(_as_list(file, f"{where}.datasets", entry.get("datasets", ["text"])))]
    cases = []
    for name, method, feat, (fmt, loss) in itertools.product(model_names, methods, feats, datasets):
        model = models[name]
        sections, timeout = dict(defaults.sections), defaults.timeout_s
        for layer in (defaults.by_method.get(method), defaults.by_size.get(model.size)):
            if layer:
                sections, timeout = _apply(layer["file"], "defaults.", layer, sections, timeout)
        sections, timeout = _apply(file, f"{where}.", entry, sections, timeout)
        case = Case(model=model, method=method, features=feat, dataset=fmt, loss=loss,
                    training=sections["training"], lora=sections["lora"], checks=sections["checks"],
                    benchmark=sections["benchmark"], timeout_s=timeout, source=file)
        problem = validate_combination(case)
        if problem:
            raise CaseError(file, where, f"impossible combination {case.id}: {problem}")
        cases.append(case)
    return cases


def _display(path: Path) -> str:
    """A case file's name as errors and records show it: relative to the working directory if inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_cases(directory: str | Path = "cases", mode: str = "regression") -> list[Case]:
    """Every case declared under `directory`, validated, in file order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CaseError(str(directory), "(directory)", "case directory not found")
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    docs = [(_display(p), _read_yaml(p)) for p in files]
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
            for case in _expand(file, idx, entry, models, defaults):
                if case.id in seen:
                    raise CaseError(file, f"matrix[{idx}]", f"case {case.id} already declared in {seen[case.id]}")
                seen[case.id] = file
                cases.append(case.with_mode(mode))
    # tiny rows first (they are the ones that run everywhere), file order otherwise
    return sorted(cases, key=lambda c: SIZES.index(c.model.size))
