"""trl's DPOConfig as the LLM Engineers Handbook's finetune.py runs DPO after SFT: beta 0.1, ref_model=None."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train.backends.preference.config import preference_config

if TYPE_CHECKING:
    from suite.matrix.spec import Case

DPO_BETA = 0.1


def dpo_config(case: Case, output_dir: Path, device: str, precision: str, model_init_kwargs: dict | None) -> Any:
    from trl import DPOConfig

    return preference_config(case, output_dir, device, precision, model_init_kwargs, DPOConfig, DPO_BETA)
