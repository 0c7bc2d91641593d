"""The case record: one typed, versioned object per case run, written in one place
(suite/run/record.py's build_record builds it, `to_dict` is the JSON written) and read in one
place (`from_dict`, through suite/records/results.py's read_record and load_run). Readers use its
fields and properties, never the JSON's keys (docs/results-schema.md says what each field means).

The nested parts that are free-form (the resolved case, the environment, the trainer's arguments, the
memory, timing and device sections) stay dicts; what reports read often has a property here.

Records of an older schema load: what they lack is derived (schema 1 had no `backend`: it comes from
LEGACY_BACKENDS, what the trainers were then) or left as the file had it, and `to_dict` writes back
what was read plus what was derived. A record of a newer schema is refused, naming the file.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field

from suite.errors import RecordError
from suite.kernelclass import UNKNOWN, KernelClass, recorded
from suite.matrix.spec import DEFAULT_TRAINER

# The version this suite writes and the newest it reads; what each version changed is listed in
# suite/records/results.py's docstring and docs/results-schema.md.
SCHEMA_VERSION = 2
RECORD_KIND = "ftsuite.case-result"
STATUSES = ("passed", "failed", "error", "skipped")
MEASURED = ("passed", "failed")  # statuses of a case that trained and was measured (a check may have failed)
BACKEND_SINCE = 2  # the first schema whose records say which backend trained them

# Schema versions whose metrics mean the same (a record of one is compared with a record of the
# other metric by metric): 2 only added `backend`.
SAME_METRICS_AS = {2: 1}


@dataclass(frozen=True)
class BackendInfo:
    """What trained a case, as the record says (suite/train/backends/ at record time)."""

    name: str  # how messages name it: "trl SFTTrainer"
    label: str  # how a side-by-side names it next to another backend: "HF", "Trainer"
    trainer_class: str  # its trainer class as its name ends: "SFTTrainer", "DPOTrainer", "Trainer" ("unsloth")
    twin: str | None = None  # the trainer axis value it does the same job as (a side-by-side pairs the two)

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "trainer_class": self.trainer_class, "twin": self.twin}

    @classmethod
    def from_dict(cls, doc: object, where: str) -> BackendInfo:
        if not isinstance(doc, dict):
            raise RecordError(where, f"field backend: expected dict, got {type(doc).__name__}")
        for name in ("name", "label", "trainer_class"):
            if not isinstance(doc.get(name), str):
                raise RecordError(where, f"field backend.{name}: " + (
                    "missing" if name not in doc else f"expected str, got {type(doc[name]).__name__}"))
        if doc.get("twin") is not None and not isinstance(doc["twin"], str):
            raise RecordError(where, f"field backend.twin: expected str or null, got {type(doc['twin']).__name__}")
        unknown = set(doc) - {"name", "label", "trainer_class", "twin"}
        if unknown:
            raise RecordError(where, f"field backend: unknown keys {', '.join(sorted(unknown))}")
        return cls(doc["name"], doc["label"], doc["trainer_class"], doc.get("twin"))


# What the trainers were at schema 1, for records written before `backend` existed. Frozen data about
# old records, not the live backends (suite/train/backends/), which may be renamed or relabelled since:
# by the case's trainer (absent: trl's SFTTrainer), and the methods another library trained then.
LEGACY_TRAINER = "sft"  # a schema-1 case without `trainer`
LEGACY_BACKENDS = {
    "sft": BackendInfo("trl SFTTrainer", "HF", "SFTTrainer"),
    "dpo": BackendInfo("trl DPOTrainer", "DPO", "DPOTrainer"),
    "hf_trainer": BackendInfo("transformers Trainer with peft", "Trainer", "Trainer", twin="sft"),
}
LEGACY_METHOD_BACKENDS = {  # (trainer, method) -> backend, ahead of the trainer's own
    ("sft", "unsloth"): BackendInfo("unsloth", "unsloth", "unsloth"),
}


def legacy_backend(case: dict) -> BackendInfo | None:
    """The backend of a schema-1 record, from its resolved case (None: a trainer schema 1 did not have)."""
    trainer = case.get("trainer") or LEGACY_TRAINER
    method = case.get("method")
    return LEGACY_METHOD_BACKENDS.get((trainer, method)) or LEGACY_BACKENDS.get(trainer)


# The top-level keys, in the order written, with their JSON types: what a field may hold, whether
# every record has it (else a record written before the field existed may lack it), and whether it is
# left out when it has no value (rather than written as null).
_NUMBER = (int, float)
_JSON_NAMES = {int: "int", float: "float", str: "str", list: "list", dict: "dict", bool: "bool"}


@dataclass(frozen=True)
class _Key:
    name: str
    types: tuple[type, ...]
    required: bool = False
    nullable: bool = False
    omit_none: bool = False  # absent rather than null when there is nothing to say

    def describe(self) -> str:
        names = dict.fromkeys(_JSON_NAMES[t] for t in self.types)
        return " or ".join([*names, *(["null"] if self.nullable else [])])


_KEYS = (
    _Key("schema_version", (int,), required=True),
    _Key("kind", (str,), required=True),
    _Key("run_id", (str,), required=True),
    _Key("kernel_class", (str,), omit_none=True),
    _Key("case_id", (str,), required=True),
    _Key("repeat", (int,), nullable=True),
    _Key("mode", (str,), nullable=True),
    _Key("status", (str,), required=True),
    _Key("reason", (str,), nullable=True),
    _Key("markers", (list,), required=True),
    _Key("fingerprint", (str,), required=True),
    _Key("case", (dict,), required=True),
    _Key("backend", (dict,), nullable=True),  # required from BACKEND_SINCE
    _Key("started_at", (str,), nullable=True),
    _Key("wall_s", _NUMBER, nullable=True),
    _Key("metrics", (dict,), required=True),
    _Key("loss_curve", (list,), required=True),
    _Key("step_times_s", (list,)),
    _Key("step_cpu_times_s", (list,)),
    _Key("step_tokens", (list,)),
    _Key("flops", (dict,), nullable=True),
    _Key("work", (dict,), nullable=True),
    _Key("train", (dict,), nullable=True),
    _Key("params", (dict,), nullable=True),
    _Key("memory", (dict,), nullable=True),
    _Key("timing", (dict,), nullable=True),
    _Key("device", (dict,), nullable=True),
    _Key("checkpoint", (dict,), nullable=True),
    _Key("reload", (dict,), nullable=True),
    _Key("reference", (dict,), omit_none=True),
    _Key("eval_curve", (list,), omit_none=True),
    _Key("dropout", (dict,), omit_none=True),
    _Key("resolved", (dict,), nullable=True),
    _Key("checks", (list,), required=True),
    _Key("budgets", (dict,), nullable=True),
    _Key("failure", (dict,), nullable=True),
    _Key("warnings", (list,)),
    _Key("environment", (dict,), required=True),
)
KEYS = tuple(k.name for k in _KEYS)
_BY_NAME = {k.name: k for k in _KEYS}


@dataclass(frozen=True)
class CaseRecord:
    """One case run's record (docs/results-schema.md), a field per top-level key of its JSON."""

    schema_version: int
    run_id: str
    case_id: str
    status: str  # passed | failed | error | skipped
    fingerprint: str
    case: dict  # the resolved case (suite/matrix/spec.py's Case.to_dict)
    environment: dict  # as in the manifest (suite/records/provenance.py)
    kind: str = RECORD_KIND
    # the class the run was judged under (suite/kernelclass.py), written as its name; read back from
    # the name and device.kernels (records before 2026-12-05 have only the kernels); None: no payload
    kernel_class: KernelClass | None = None
    repeat: int | None = None  # 0 for the first record of a case in a run, then 1, 2, ...
    mode: str | None = None  # regression | benchmark
    reason: str | None = None  # why skipped, or the failure messages
    markers: tuple[str, ...] = ()
    backend: BackendInfo | None = None  # what trained it (schema 1: LEGACY_BACKENDS)
    started_at: str | None = None
    wall_s: float | None = None
    metrics: dict[str, dict] = field(default_factory=dict)  # name -> {value, unit, better}
    loss_curve: list[dict] = field(default_factory=list)  # {step, loss, ...} per logged step
    step_times_s: list[float] = field(default_factory=list)
    step_cpu_times_s: list[float] = field(default_factory=list)
    step_tokens: list[list[int]] = field(default_factory=list)
    flops: dict | None = None
    work: dict | None = None
    train: dict | None = None
    params: dict | None = None
    memory: dict | None = None
    timing: dict | None = None
    device: dict | None = None
    checkpoint: dict | None = None
    reload: dict | None = None
    reference: dict | None = None  # DPO cases only
    eval_curve: list[dict] | None = None  # only for a case with an eval split
    dropout: dict | None = None  # only for an adapter trained with LoRA dropout (the lora_dropout check)
    resolved: dict | None = None
    checks: list[dict] = field(default_factory=list)  # {name, passed, message, value, bound}
    budgets: dict | None = None
    failure: dict | None = None  # kind, message, exitcode, stderr_tail of a case that errored
    warnings: list[str] = field(default_factory=list)
    # What to_dict needs to write back what was read: the keys the file did not have (a record
    # written before a field existed), and keys this suite does not know (a newer writer of the same
    # schema may add a field older readers ignore).
    absent: frozenset[str] = field(default=frozenset(), repr=False)
    extra: dict = field(default_factory=dict, repr=False)

    # -- the JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The JSON document of this record, keys in the order written (docs/results-schema.md)."""
        out: dict = {}
        for key in _KEYS:
            value = getattr(self, key.name)
            if key.name in self.absent or (key.omit_none and value is None):
                continue
            if key.name == "backend":
                value = value.to_dict() if value is not None else None
            elif key.name == "kernel_class":
                value = value.name
            elif key.name == "markers":
                value = list(value)
            out[key.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, doc: object, where: str) -> CaseRecord:
        """A record as read from a file, or RecordError naming the file (`where`) and the field."""
        if not isinstance(doc, dict):
            raise RecordError(where, f"not a result record (a JSON {type(doc).__name__}, expected an object)")
        version = doc.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise RecordError(where, "field schema_version: missing or not an integer")
        if version > SCHEMA_VERSION:
            raise RecordError(where, f"field schema_version: {version} is newer than this ftsuite reads "
                                     f"({SCHEMA_VERSION}); upgrade ftsuite to read it")
        if doc.get("kind") != RECORD_KIND:
            raise RecordError(where, f"field kind: expected {RECORD_KIND!r}, got {doc.get('kind')!r}")
        for key in _KEYS:
            if key.name in doc:
                _check_type(key, doc[key.name], where)
            elif key.required or (key.name == "backend" and version >= BACKEND_SINCE):
                raise RecordError(where, f"field {key.name}: missing")
        if doc["status"] not in STATUSES:
            raise RecordError(where, f"field status: {doc['status']!r} is not one of {', '.join(STATUSES)}")
        _check_parts(doc, where)
        if "backend" in doc:
            backend = BackendInfo.from_dict(doc["backend"], where) if doc["backend"] is not None else None
        else:  # a record from before BACKEND_SINCE: what its trainer was then
            backend = legacy_backend(doc["case"])
        values = {k.name: doc[k.name] for k in _KEYS if k.name in doc}
        values["markers"] = tuple(doc["markers"])
        values["backend"] = backend
        values["kernel_class"] = _kernel_class(doc)
        absent = frozenset(k.name for k in _KEYS if k.name not in doc and k.name != "backend"
                           and (not k.omit_none or k.name == "kernel_class"))
        return cls(**values, absent=absent, extra={k: v for k, v in doc.items() if k not in _BY_NAME})

    # -- what readers ask of it -------------------------------------------------------------------

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def measured(self) -> bool:
        """Trained and measured (passed, or failed a check); errored and skipped cases were not."""
        return self.status in MEASURED

    @property
    def metrics_schema(self) -> int:
        """The schema whose metrics this record's mean: records of two versions with the same one
        compare metric by metric."""
        return SAME_METRICS_AS.get(self.schema_version, self.schema_version)

    @property
    def model_name(self) -> str | None:
        model = self.case.get("model")
        return model.get("name") if isinstance(model, dict) else model

    @property
    def trainer(self) -> str:
        """The trainer axis value (the resolved case leaves out the default, trl's SFTTrainer)."""
        return self.case.get("trainer") or DEFAULT_TRAINER

    @property
    def method(self) -> str | None:
        return self.case.get("method")

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.case.get("features") or ())

    @property
    def dataset(self) -> str | None:
        return self.case.get("dataset")

    @property
    def loss(self) -> str | None:
        """The loss the case trained with (`effective_loss`; older records: the declared `loss`)."""
        return self.case.get("effective_loss") or self.case.get("loss")

    @property
    def warmup_steps(self) -> int:
        """The steps the timing metrics leave out (case.benchmark.warmup_steps)."""
        warmup = (self.case.get("benchmark") or {}).get("warmup_steps", 0)
        return warmup if isinstance(warmup, int) else 0

    def metric(self, name: str) -> dict | None:
        """What the record says of a metric: {value, unit, better}; None when it has none."""
        return self.metrics.get(name)

    def metric_value(self, name: str) -> float | None:
        """A metric's value, None when the record has none (or not a number)."""
        value = (self.metrics.get(name) or {}).get("value")
        return value if isinstance(value, _NUMBER) and not isinstance(value, bool) else None

    def metric_table(self) -> dict[str, float]:
        """Every metric that has a value: name -> value."""
        return {name: v for name in self.metrics if (v := self.metric_value(name)) is not None}

    @property
    def failed_checks(self) -> list[dict]:
        return [c for c in self.checks if not c["passed"]]

    def unjudged_checks(self) -> list[dict]:
        """The checks that could not judge this case and said why (`judged: false`; absent means judged)."""
        return [c for c in self.checks if c.get("judged") is False]

    @property
    def device_type(self) -> str | None:
        """cpu or cuda; None for a record with no payload."""
        return (self.device or {}).get("type")

    @property
    def class_name(self) -> str:
        """The kernel class's name ("unknown" for a record with no payload)."""
        return self.kernel_class.name if self.kernel_class is not None else UNKNOWN

    @property
    def profile(self) -> str | None:
        """The hardware profile of the budgets (budgets.profile)."""
        return (self.budgets or {}).get("profile")

    @property
    def packages(self) -> dict:
        """The stack's versions the case ran with (environment.packages)."""
        return self.environment.get("packages") or {}

    @property
    def reload_diff(self) -> float | None:
        """The reloaded checkpoint's logits against the in-memory model's (reload.max_abs_logit_diff)."""
        value = (self.reload or {}).get("max_abs_logit_diff")
        return value if isinstance(value, _NUMBER) and not isinstance(value, bool) else None

    @property
    def checkpoint_directory(self) -> str | None:
        """The checkpoint's folder, relative to the results folder (None: no checkpoint recorded)."""
        return (self.checkpoint or {}).get("directory") or None


def _kernel_class(doc: dict) -> KernelClass | None:
    """The record's kernel class, the object, read back once here (None: the case never returned a payload)."""
    device = doc.get("device")
    if doc.get("kernel_class") is None and not isinstance(device, dict):
        return None
    kernels = device.get("kernels") if isinstance(device, dict) else None
    return recorded(doc.get("kernel_class"), kernels if isinstance(kernels, dict) else {})


def _check_type(key: _Key, value: object, where: str) -> None:
    if value is None and key.nullable:
        return
    if not isinstance(value, key.types) or (isinstance(value, bool) and bool not in key.types):
        raise RecordError(where, f"field {key.name}: expected {key.describe()}, got {type(value).__name__}")


def _check_parts(doc: dict, where: str) -> None:
    """The nested parts readers rely on: marker names, metric entries, curve points, check results."""
    for i, marker in enumerate(doc["markers"]):
        if not isinstance(marker, str):
            raise RecordError(where, f"field markers[{i}]: expected str, got {type(marker).__name__}")
    for name, entry in doc["metrics"].items():
        if not isinstance(entry, dict):
            raise RecordError(where, f"field metrics.{name}: expected dict, got {type(entry).__name__}")
        value = entry.get("value")
        if value is not None and (not isinstance(value, _NUMBER) or isinstance(value, bool)):
            raise RecordError(where, f"field metrics.{name}.value: expected a number, got {type(value).__name__}")
    for curve in ("loss_curve", "eval_curve"):
        for i, point in enumerate(doc.get(curve) or []):
            if not isinstance(point, dict):
                raise RecordError(where, f"field {curve}[{i}]: expected dict, got {type(point).__name__}")
    for i, check in enumerate(doc["checks"]):
        if not isinstance(check, dict):
            raise RecordError(where, f"field checks[{i}]: expected dict, got {type(check).__name__}")
        if not isinstance(check.get("name"), str):
            raise RecordError(where, f"field checks[{i}].name: missing or not a string")
        if not isinstance(check.get("passed"), bool):
            raise RecordError(where, f"field checks[{i}].passed: missing or not true/false")
        if "judged" in check and not isinstance(check["judged"], bool):
            raise RecordError(where, f"field checks[{i}].judged: expected true/false, got "
                                     f"{type(check['judged']).__name__}")


__all__ = ["SCHEMA_VERSION", "RECORD_KIND", "STATUSES", "MEASURED", "KEYS", "BackendInfo", "CaseRecord",
           "LEGACY_BACKENDS", "LEGACY_METHOD_BACKENDS", "legacy_backend"]


def metric_values(records: list[CaseRecord], name: str) -> list[float]:
    """The finite values of one metric across records (repeats); records without it add nothing."""
    out = []
    for rec in records:
        value = rec.metric_value(name)
        if value is not None and math.isfinite(value):
            out.append(float(value))
    return out
