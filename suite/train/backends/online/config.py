"""The generating trainers' trl config (GRPOConfig, RLOOConfig) on the tiny models: 4 completions of at most
8 tokens per prompt, sampled at temperature 1 (trl's default, no top-k or top-p), so that a case's batch of
16 is 4 prompts x 4 completions and a step generates in milliseconds on a CPU. GRPO's loss type is
GRPOConfig's default in trl 1.16 ("dapo": the token-level sum over the generation batch / its completion
tokens), said explicitly so that a changed default shows as a changed fingerprint, not as a moved curve."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train import args as train_args

if TYPE_CHECKING:
    from suite.matrix.spec import Case

NUM_GENERATIONS = 4
MAX_COMPLETION_LENGTH = 8
GRPO_LOSS_TYPE = "dapo"


def pinned(defaults: dict) -> dict:
    """What the suite pins of a generating trainer's config: generation, sampling and the trainer's `defaults`."""
    return {"num_generations": NUM_GENERATIONS, "max_completion_length": MAX_COMPLETION_LENGTH, **defaults}


def pinned_value(case: Case, field: str, defaults: dict) -> Any:
    """A field the suite pins, as the case declares it: its extra, else the suite's value (KeyError: not pinned)."""
    return {**pinned(defaults), **dict(case.training.extra)}[field]


def online_config(case: Case, output_dir: Path, device: str, precision: str, model_init_kwargs: dict | None,
                  config_cls: type, defaults: dict) -> Any:
    """trl's GRPOConfig or RLOOConfig: generation, sampling and the trainer's `defaults`, then the case's extra."""
    return train_args.config(case, output_dir, device, precision, model_init_kwargs, config_cls,
                             f"trl's {config_cls.__name__}", pinned(defaults))
