"""trl's SFTConfig for the SFT trainer's backends (transformers' and unsloth's): every trainer's arguments,
packing, max_length and the loss flags the case's data format and loss ask for."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from suite.train import args as train_args
from suite.train import compat

if TYPE_CHECKING:
    from suite.matrix.spec import Case


def sft_config(case: Case, output_dir: Path, device: str, precision: str, model_init_kwargs: dict | None):
    from trl import SFTConfig

    t = case.training
    extra = train_args.extra_fields(case, compat.sft_config_fields(), "trl's SFTConfig")
    kwargs = dict(
        **train_args.common(case, output_dir, device, precision),
        packing=case.uses.packs,
        **compat.max_length_args(t.max_length),
    )
    # unsloth's patched SFTConfig defaults padding_free=None (it may turn padding-free batching on by
    # itself): off, so that its side-by-side with the HF case does not compare batching too.
    if not case.uses.packs and "padding_free" in compat.sft_config_fields():
        kwargs["padding_free"] = False
    if case.uses.packing_strategy is not None:  # a packing feature that names trl's strategy (issue 37)
        kwargs["packing_strategy"] = case.uses.packing_strategy
    if case.loss_kind.assistant_turns:
        kwargs["assistant_only_loss"] = True
    elif case.format.prompt:
        kwargs["completion_only_loss"] = case.loss_kind.on_completion
    if model_init_kwargs is not None:
        kwargs["model_init_kwargs"] = model_init_kwargs
    return SFTConfig(**{**kwargs, **extra})
