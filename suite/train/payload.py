"""What a case's child hands its parent: one schema, as dataclasses. The child builds a `Payload`, it
crosses the process boundary as JSON (`to_dict`/`from_dict`), and the parent's checks, metrics and
record writer read its fields, never a nested dict by string. The record on disk keeps the same
fields (docs/results-schema.md); `to_dict` leaves out what a device did not measure."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from suite.train.mechanics import Mechanics
from suite.train.modeling import ModelRelations


def _out(obj: Any) -> dict:
    """A dataclass as the record's dict: its fields in order, optional fields that are None left out."""
    doc = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None and f.default is None:
            continue
        doc[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
    return doc


def _in(cls, doc: dict | None):
    return None if doc is None else cls(**doc)


class _Part:
    """A part of the payload, written to the record as a dict of its fields."""

    def to_dict(self) -> dict:
        return _out(self)


@dataclass
class Quantized(_Part):
    """4-bit storage in the QLoRA paper's accounting (suite/train/probes.py)."""
    params: int
    packed_bytes: int
    block_constant_bytes: int
    per_tensor_bytes: int
    bits_per_param: float
    # the base's other weights (2-D and up; embeddings and head apart), which bitsandbytes left in the
    # compute dtype: {name within a layer: parameters over the layers}, e.g. a mixture of experts' fused experts
    unquantized: dict[str, int] | None = None


@dataclass
class Params(_Part):
    trainable: int
    total: int
    trainable_bytes: int
    trainable_dtypes: list[str]
    trainable_tensors: int
    state_dict_keys: list[str] | None = None  # full fine-tunes: what the checkpoint must hold
    state_dict_bytes: int | None = None
    quantized: Quantized | None = None
    # adapters of parameters (peft's target_parameters, the fused experts): per wrapped parameter its
    # name, shape and the names and shapes of its lora_A / lora_B in the adapter file
    parameter_adapters: list[dict] | None = None


    def for_record(self) -> dict:
        """The record keeps the count of the state dict's tensors, not their names."""
        doc = self.to_dict()
        keys = doc.pop("state_dict_keys", None)
        if keys is not None:
            doc["state_dict_tensors"] = len(keys)
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> Params:
        return cls(**{**doc, "quantized": _in(Quantized, doc.get("quantized"))})


@dataclass
class Flops(_Part):
    """What the parent needs to turn tokens/s into model FLOP/s (suite/judge/hardware.py)."""
    n_layers: int
    hidden: int
    embedding_params: int
    total_params: int
    trainable_params: int
    full: bool
    mean_seq_len: float


@dataclass
class TrainInfo(_Part):
    steps: int
    runtime_s: float | None
    epochs: float | None
    tokens: int  # tokens that carry a label
    processed_tokens: int  # non-padding input tokens
    samples: int


@dataclass
class Memory(_Part):
    device: str
    peak_rss_bytes: int
    start_rss_bytes: int
    cuda_max_allocated_bytes: int | None = None
    cuda_max_reserved_bytes: int | None = None
    nvml_peak_used_bytes: int | None = None


@dataclass
class Timing(_Part):
    build_s: float
    train_s: float
    save_s: float
    reload_s: float
    setup_s: float | None = None
    train_cpu_s: float | None = None  # the process's user + system time in train()
    materialise_s: float | None = None  # a one-off build of a model into the cache, left out of setup_s
    import_s: float | None = None  # a spawned child's start and imports, left out of setup_s
    routes_s: float | None = None  # loading the checkpoint by every route (suite/train/routes.py)

    def to_dict(self) -> dict:
        doc = _out(self)
        # the record lists them in the order they were measured
        order = ("build_s", "train_s", "train_cpu_s", "save_s", "reload_s", "routes_s", "materialise_s", "setup_s",
                 "import_s")
        return {k: doc[k] for k in order if k in doc}


@dataclass
class CheckpointRef(_Part):
    dir: str
    kind: str  # "adapter" | "full"


@dataclass
class Reload(_Part):
    loader: str
    max_abs_logit_diff: float
    probe_shape: list[int]
    # every load route (suite/train/routes.py), in order: each one's outcome, or why it does not apply;
    # None in records from before the routes
    routes: list[dict] | None = None
    generated: list[int] | None = None  # the trained model's greedy ids from the probe prompt
    tokenizer: dict | None = None  # the tokenizer saved beside the checkpoint vs training's


@dataclass
class Device(_Part):
    type: str  # "cpu" | "cuda"
    precision: str
    threads: int
    attention_ops: dict[str, int] | None
    kernels: dict
    name: str
    sdpa_backends: dict[str, bool] | None = None


@dataclass
class Reference(_Part):
    """A preference trainer's reference model after training, against itself before training."""
    kind: str  # "the disabled adapter" | "ref_model (...)"
    max_abs_logit_diff: float
    compared: str | None = None  # what was compared with what (None: a record from before 2026-12-05,
    # which compared with a fresh load of the base)
    repacked: bool = False  # bitsandbytes repacked the 4-bit base for its bf16 inference GEMM in between


@dataclass
class Strategy(_Part):
    """What wrapped the model that trained, and on how many ranks (suite/train/wrapped.py): the strategy
    that ran, which the parent holds to the one asked (suite/judge/strategy.py)."""
    wrapper: str  # the class of the Trainer's model_wrapped, e.g. DistributedDataParallel
    kind: str | None  # DistributedDataParallel, FullyShardedDataParallel, FSDPModule, DeepSpeedEngine, or None
    sharded_modules: int  # modules sharded by FSDP (FSDP1 units or FSDP2 fully_shard modules)
    world_size: int  # torch.distributed's world size (1: no process group)
    distributed_type: str | None = None  # accelerate's, e.g. MULTI_CPU, MULTI_GPU, FSDP
    zero_stage: int | None = None  # a DeepSpeedEngine's ZeRO stage, read from the engine (None: not DeepSpeed)


@dataclass
class Payload:
    loss_curve: list[dict]  # per logged step: step, loss, grad_norm, learning_rate, ...
    step_times_s: list[float]
    step_tokens: list[list[int]]  # per step: processed, labelled, sequences
    flops: Flops | None
    train: TrainInfo
    params: Params
    memory: Memory
    timing: Timing
    checkpoint: CheckpointRef
    reload: Reload | None
    device: Device
    resolved: dict = field(default_factory=dict)  # what trl was given: model path, attention, arguments
    warnings: list[str] = field(default_factory=list)
    step_cpu_times_s: list[float] = field(default_factory=list)  # the training thread's CPU time per step
    # counted in one extra step (suite/train/measure.py profiled_step): flops, aten_calls, processed_tokens, ...
    work: dict | None = None
    reference: Reference | None = None  # DPO: the reference model, checked untouched
    eval_curve: list[dict] = field(default_factory=list)  # per evaluation of the eval split: step, eval_loss, ...
    dropout: dict | None = None  # LoRA dropout at work after training (suite/train/probes.py lora_dropout)
    # a phase after training that raised ("reload", "tokenizer", "profile") -> "Type: first line": the check
    # that judges it fails with it (suite/judge/checks.py), the rest of the case is judged
    raised: dict[str, str] = field(default_factory=dict)
    strategy: Strategy | None = None  # ddp/fsdp cases: what wrapped the model that trained (None: one process)
    # the training mechanics as the child saw them (suite/train/mechanics.py): the generic relations'
    # (suite/judge/mechanics.py); None in payloads built before them
    mechanics: Mechanics | None = None
    # the trained causal LM's padding invariance and, with a router, its auxiliary loss by definition
    # (suite/train/modeling.py; judged by suite/judge/modeling.py); None where not measured
    model_relations: ModelRelations | None = None

    @property
    def losses(self) -> list[float]:
        return [p["loss"] for p in self.loss_curve]

    def to_dict(self) -> dict:
        return {f.name: (getattr(self, f.name).to_dict() if hasattr(getattr(self, f.name), "to_dict")
                         else getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, doc: dict) -> Payload:
        return cls(loss_curve=doc["loss_curve"], step_times_s=doc["step_times_s"], step_tokens=doc["step_tokens"],
                   flops=_in(Flops, doc.get("flops")), train=TrainInfo(**doc["train"]),
                   params=Params.from_dict(doc["params"]), memory=Memory(**doc["memory"]),
                   timing=Timing(**doc["timing"]), checkpoint=CheckpointRef(**doc["checkpoint"]),
                   reload=_in(Reload, doc.get("reload")), device=Device(**doc["device"]),
                   resolved=doc.get("resolved") or {}, warnings=doc.get("warnings") or [],
                   step_cpu_times_s=doc.get("step_cpu_times_s") or [], work=doc.get("work"),
                   reference=_in(Reference, doc.get("reference")), eval_curve=doc.get("eval_curve") or [],
                   dropout=doc.get("dropout"), raised=doc.get("raised") or {},
                   strategy=_in(Strategy, doc.get("strategy")),
                   mechanics=Mechanics.from_dict(doc["mechanics"]) if doc.get("mechanics") else None,
                   model_relations=(ModelRelations.from_dict(doc["model_relations"]) if doc.get("model_relations")
                                    else None))
