"""What every trainer backend declares, so that the rest of the suite asks it instead of comparing
method names: how its child starts, what it requires, what it controls, whether it runs distributed,
how it builds the trainer and reloads the checkpoint. Heavy imports stay inside the methods: the
matrix reads the declarations when the case files load."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suite.matrix.spec import Case


class Backend:
    name = ""  # how messages name it
    trainer = "sft"  # the matrix's trainer axis value it serves
    label = ""  # how a side-by-side names it next to another backend ("HF", "unsloth")
    methods: tuple[str, ...] = ()  # the matrix methods it trains
    four_bit_methods: tuple[str, ...] = ()  # methods that load a 4-bit (bitsandbytes) base
    eight_bit_methods: tuple[str, ...] = ()  # methods that load an 8-bit (bitsandbytes LLM.int8) base
    needs_gpu = False  # its kernels need CUDA
    packages: tuple[tuple[str, str], ...] = ()  # (module, pip name) its child imports beyond the stack
    picks_attention = False  # it chooses its own attention kernels: no variant, no attention check
    distributed = True  # it can run as ddp/fsdp ranks
    spawn_always = False  # its child starts in a fresh interpreter even where others are forked
    formats: tuple[str, ...] = ("text", "messages", "prompt_completion", "conversational_pc", "chatml")  # data it takes
    features: tuple[str, ...] | None = None  # the features it can train (None: all)
    preference = False  # trains on preference pairs: the DPO checks apply (suite/judge/checks.py)

    def four_bit(self, case: Case) -> bool:
        return case.method in self.four_bit_methods

    def quantized(self, case: Case) -> bool:
        """Its base is quantized by bitsandbytes (4- or 8-bit)."""
        return case.method in self.four_bit_methods + self.eight_bit_methods

    def start_method(self, cuda: bool) -> str:
        """"spawn" on a CUDA machine (a fork of the preloaded server could not use CUDA) or where the
        backend must import first; else a fork of the preloaded forkserver."""
        return "spawn" if cuda or self.spawn_always else "forkserver"

    def prepare_child(self) -> None:
        """Run first in a spawned child, before the stack is imported."""

    def cannot_run(self, case: Case) -> str | None:
        """Why this backend cannot train the case (refused when the case files load), or None."""
        return None

    def reload_kwargs(self, case: Case, device: str, dtype: Any) -> dict:
        """The kwargs `reload` loads the base with (what build_trainer returns as its third item)."""
        raise NotImplementedError

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None) -> tuple[Any, Any, dict]:
        """(trainer, tokenizer, the kwargs the reload loads the base with)."""
        raise NotImplementedError

    def reload(self, case: Case, model_path: str, checkpoint: Path, load_kwargs: dict) -> tuple[Any, str]:
        """Read the checkpoint back as a user would: (its logits on the probe input, the loader's name)."""
        raise NotImplementedError

    def save(self, case: Case, trainer: Any, directory: Path) -> None:
        """Save the checkpoint as a user of this trainer would."""
        from suite.train import tokens

        if case.dataset in tokens.FORMATS:  # peft's own advice when the vocabulary was resized
            trainer.model.save_pretrained(str(directory), save_embedding_layers=False)
            trainer.processing_class.save_pretrained(str(directory))
        else:
            trainer.save_model(str(directory))

    def reference_snapshot(self, trainer: Any, tokenizer: Any, device: str) -> Any:
        """Before training, what `reference` compares with after it (None: no reference model)."""
        return None

    def reference(self, trainer: Any, case: Case, before: Any, tokenizer: Any, device: str) -> dict | None:
        """After training, a preference trainer's reference against its snapshot from before training:
        {"kind": ..., "max_abs_logit_diff": ...}; None for trainers without a reference."""
        return None
