"""What every trainer backend declares, so that the rest of the suite asks it instead of comparing
axis values: which trainer it is, which adapters, quantizations and library it trains, how its child
starts, what it requires, what it controls, whether it runs distributed, how it builds the trainer and
reloads the checkpoint, and which checks, metrics, logged keys, known faults and invariant settings are
its own (a new trainer brings its own and inherits none by accident): a trainer's package under
suite/train/backends/<trainer>/ holds them, and the registry merges them for the judge, the metrics and
the fault hook. Heavy imports stay inside the methods: the parent reads the declarations when the case
files load (suite/train/backends/registry.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from suite.checkresult import Bounds, CheckResult
from suite.matrix.axes import ADAPTERS, QUANTIZATIONS, TRANSFORMERS, Adapter, Library, Quantization
from suite.matrix.spec import DEFAULT_TRAINER

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.metric import Metric
    from suite.train.payload import Payload


@dataclass(frozen=True)
class TrainerCheck:
    """A check a trainer declares as its own (Backend.checks): `name` is what a record lists it under
    when its evaluation raises (the check's result names itself otherwise); `evaluate` judges a case's
    payload with the run's kernel-class bounds and the checkpoint's inventory (suite/judge/checks.py's
    `planned` calls it in the backend's order, after the generic checks)."""

    name: str
    evaluate: Callable[[Case, Payload, Bounds | None, Any], CheckResult | list[CheckResult]]


@dataclass(frozen=True)
class DeclaredFaults:
    """Known faults a trainer brings for its checks' tests (suite/train/inject.py collects them through the
    registry and installs them on a built trainer only under FTSUITE_INJECT): their kind names and how they
    are put in, `install(trainer, the requested faults among those kinds)`."""

    kinds: tuple[str, ...]
    install: Callable[[Any, dict[str, float]], None]


@dataclass(frozen=True)
class BuildHooks:
    """What a caller may swap when a backend builds its trainer: the invariants' "can fail" tests
    break a relation on purpose this way (another trainer class, collator, adapter config or
    tokenizer, more trainer arguments); the matrix never sets them."""

    trainer_cls: Any = None
    peft_config: Any = None
    tokenizer: Any = None
    trainer_kwargs: dict = field(default_factory=dict)


NO_HOOKS = BuildHooks()


class Backend:
    name = ""  # how messages name it
    trainer = DEFAULT_TRAINER  # the matrix's trainer axis value it serves
    description = "trainer: trl's SFTTrainer"  # its marker's description
    label = ""  # how a side-by-side names it next to another backend ("HF", "unsloth")
    trainer_class = ""  # the trainer class it builds, as records name it (empty: the word its name ends with)
    library: Library = TRANSFORMERS  # whose code loads the model and wraps the adapter
    adapters: tuple[Adapter, ...] = ADAPTERS  # what it trains
    quantizations: tuple[Quantization, ...] = QUANTIZATIONS  # the bases it trains on
    twin: str | None = None  # the trainer it does the same job as: a side-by-side compares the two
    # What is this trainer's own, declared by its package: its checks (judged after the generic ones), its
    # Metric lines (suite/judge/metrics.py collects them), the metrics it logs beyond the loss ({metric: the
    # key trl logs}), the per-step keys the measurement records beside the loss (floats; lists as logged),
    # and its known faults
    checks: tuple[TrainerCheck, ...] = ()
    metrics: tuple[Metric, ...] = ()
    logged_metrics: dict[str, str] = {}
    logged_keys: tuple[str, ...] = ()
    logged_lists: tuple[str, ...] = ()
    faults: tuple[DeclaredFaults, ...] = ()
    packages: tuple[tuple[str, str], ...] = ()  # (module, pip name) its child imports beyond the stack
    picks_attention = False  # it chooses its own attention kernels: no variant, no attention check
    distributed = True  # it can run as ddp/fsdp ranks
    spawn_always = False  # its child starts in a fresh interpreter even where others are forked
    formats: tuple[str, ...] = ("text", "messages", "prompt_completion", "conversational_pc", "chatml",
                                "long_messages")  # data it takes
    features: tuple[str, ...] | None = None  # the features it can train (None: all)
    # how it truncates rows to the case's max_length: "exact" (its rows are max_length long after truncation),
    # "at most" (the plain Trainer cuts when tokenising), None (a generating trainer has no such field)
    max_length_cut: str | None = "exact"
    head = "causal_lm"  # the model's head (suite/train/routes.py's heads): how it is probed and reloaded
    generates = True  # its model generates text (the routes compare greedy ids); a classifier does not
    adapter_carries: tuple[str, ...] = ()  # name fragments of non-LoRA tensors its adapter must hold (a score head)
    loss_falls = True  # its logged loss falls as it learns (loss_decreases); a policy-gradient surrogate's does not

    def checks_for(self, case: Case) -> tuple[TrainerCheck, ...]:
        """Its own checks that apply to the case (all of them unless a setting of the case removes a term)."""
        return self.checks

    def instrument(self, trainer: Any) -> Any:
        """Install what counts each step's tokens (after any known fault); return it (its per_step gives the
        counts): the CountingCollator around the trainer's collator."""
        from suite.train.measure import CountingCollator

        counter = trainer.data_collator = CountingCollator(trainer.data_collator)
        return counter

    def describe(self, trainer: Any) -> dict:
        """What the record says of the run beyond the trainer's arguments (a generating trainer: what it sampled)."""
        return {}

    def version_needs(self, case: Case) -> list[str]:
        """The suite.train.compat requirements the installed versions must meet to train the case as
        declared (SFTTrainer's prompt-completion data and loss flags; trl 1.15's log-probability kernel)."""
        needed = ["trl_loss_kernel"]
        if case.loss_kind.on_completion or case.format.prompt:
            needed += ["prompt_completion", "completion_only_loss"]
        return needed

    def declared_fields(self, case: Case, common: dict) -> dict:
        """The trainer arguments the case pins, from the case itself (not from suite.train.args): what
        suite/invariants/configs.py reads back from a built trainer. `common`: every trainer's."""
        t = case.training
        out = {**common, "max_length": t.max_length, "packing": case.uses.packs}
        if case.loss_kind.assistant_turns:
            out["assistant_only_loss"] = True
        elif case.format.prompt:
            out["completion_only_loss"] = case.loss_kind.on_completion
        return {**out, **dict(t.extra)}

    def start_method(self, cuda: bool) -> str:
        """"spawn" on a CUDA machine (a fork of the preloaded server could not use CUDA) or where the
        backend must import first; else a fork of the preloaded forkserver."""
        return "spawn" if cuda or self.spawn_always else "forkserver"

    def prepare_child(self) -> None:
        """Run first in a spawned child, before the stack is imported."""

    def cannot_run(self, case: Case) -> str | None:
        """Why this backend cannot train the case (refused when the case files load), or None."""
        return None

    def machine_lacks(self, case: Case, cuda: bool) -> list[str]:
        """What this machine lacks for this backend to train the case (the skip reasons), beyond what every
        case needs (suite/run/requirements.py); `cuda`: whether a CUDA GPU is visible."""
        return []

    def reload_kwargs(self, case: Case, device: str, dtype: Any) -> dict:
        """The kwargs `reload` loads the base with (what build_trainer returns as its third item)."""
        raise NotImplementedError

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None,
                      hooks: BuildHooks = NO_HOOKS) -> tuple[Any, Any, dict]:
        """(trainer, tokenizer, the kwargs the reload loads the base with)."""
        raise NotImplementedError

    def routes(self, case: Case) -> tuple:
        """The load routes its checkpoints are checked by (suite/train/routes.py): a causal LM's."""
        from suite.train import routes

        return routes.ROUTES["causal_lm"]

    def reload(self, case: Case, model_path: str, checkpoint: Path, load_kwargs: dict) -> tuple[Any, str]:
        """Read the checkpoint back as a user would: (its logits on the probe input, the loader's name)."""
        raise NotImplementedError

    def saved_load_kwargs(self, case: Case, model_path: str, device: str, dtype: Any) -> dict:
        """The kwargs build_trainer returns as its third item, without building a trainer: what another
        process (upgrade-check's compatibility) loads this backend's base with."""
        return self.reload_kwargs(case, device, dtype)

    def route_context(self, case: Case, model_path: str, checkpoint: Path, load_kwargs: dict, device: str,
                      probe: Any = None, generated: list[int] | None = None, scratch: Path | None = None) -> Any:
        """The load routes' Context for a checkpoint of this backend: its head among them. The in-run reload
        (suite/train/run.py) and the compatibility check (suite/tools/checkpoints.py) both take it here; built
        apart, the second once loaded a sequence classifier through the causal LM's routes."""
        from suite.train import routes

        return routes.Context(case, model_path, checkpoint, load_kwargs, device, probe, generated,
                              scratch if scratch is not None else checkpoint.parent / "routes", head=self.head)

    def save(self, case: Case, trainer: Any, directory: Path) -> None:
        """Save the checkpoint as a user of this trainer would."""
        from suite.train import tokens

        if case.dataset in tokens.FORMATS:  # peft's own advice when the vocabulary was resized
            trainer.model.save_pretrained(str(directory), save_embedding_layers=False)
            trainer.processing_class.save_pretrained(str(directory))
        else:
            trainer.save_model(str(directory))

    def reference_snapshot(self, trainer: Any, case: Case, tokenizer: Any, device: str) -> Any:
        """Before training, what `reference` compares with after it (None: no reference model)."""
        return None

    def reference(self, trainer: Any, case: Case, before: Any, tokenizer: Any, device: str) -> dict | None:
        """After training, a preference trainer's reference against its snapshot from before training:
        {"kind": ..., "max_abs_logit_diff": ...}; None for trainers without a reference."""
        return None
