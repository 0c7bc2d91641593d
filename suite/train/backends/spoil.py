"""What known faults that spoil a saved checkpoint share (suite/train/inject.py's, and those a trainer's
package declares in its faults.py): installed only by inject.py's hook under FTSUITE_INJECT; nothing on the
training path calls these."""
from __future__ import annotations

from typing import Any, Callable


def after_save(trainer: Any, spoil: Callable[[Any], None]) -> None:
    """Save the wrong files: `spoil(output_dir)` runs after each of the trainer's saves."""
    saving = trainer.save_model

    def save_model(output_dir=None, *args, **kwargs):
        saving(output_dir, *args, **kwargs)
        spoil(output_dir)

    trainer.save_model = save_model


def drop_tensors(saved: Any, fragment: str) -> None:
    """Save the wrong tensors: an adapter file without the tensors whose names hold `fragment`."""
    from safetensors.torch import load_file, save_file

    path = f"{saved}/adapter_model.safetensors"
    save_file({k: v for k, v in load_file(path).items() if fragment not in k}, path, metadata={"format": "pt"})
