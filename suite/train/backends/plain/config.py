"""transformers' TrainingArguments for the plain Trainer (trainer `hf_trainer`): every trainer's arguments, the
dataset's columns kept (the backend tokenises them itself)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from suite.train import args as train_args

if TYPE_CHECKING:
    from suite.matrix.spec import Case


def training_arguments(case: Case, output_dir: Path, device: str, precision: str):
    """transformers' TrainingArguments for the plain Trainer (no trl)."""
    import dataclasses

    from transformers import TrainingArguments

    extra = train_args.extra_fields(case, {f.name for f in dataclasses.fields(TrainingArguments)},
                                    "transformers' TrainingArguments")
    kwargs = dict(**train_args.common(case, output_dir, device, precision), remove_unused_columns=False)
    return TrainingArguments(**{**kwargs, **extra})
