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


# The crafted changes to saving of issue 36: each spoils one file of a saved checkpoint the way a broken
# save_pretrained would. Every check on the saved artefacts must end as a failed check with its message,
# never as the case's error record (tests/train/test_saving_faults.py).
def drop_tokenizer_file(saved: Any) -> None:
    """The fast tokenizer's file is not saved (tokenizer_config.json stays, naming a tokenizer that is absent)."""
    from pathlib import Path

    (Path(saved) / "tokenizer.json").unlink(missing_ok=True)


def corrupt_adapter_config(saved: Any) -> None:
    """adapter_config.json cut after its first half: not JSON any more."""
    _truncate(saved, "adapter_config.json")


def drop_model_config(saved: Any) -> None:
    """config.json is not saved beside the weights."""
    from pathlib import Path

    (Path(saved) / "config.json").unlink(missing_ok=True)


def truncate_weights(saved: Any) -> None:
    """The weights' safetensors file (the adapter's, else the model's) cut after its first half."""
    from pathlib import Path

    name = "adapter_model.safetensors" if (Path(saved) / "adapter_model.safetensors").is_file() else "model.safetensors"
    _truncate(saved, name)


def save_raises(saved: Any) -> None:
    """save_model raises once the weights are written, before it returns (a full disk, say)."""
    raise OSError(28, f"No space left on device: {saved}")


def swap_vocabulary_ids(saved: Any) -> None:
    """tokenizer.json with the ids of its two last vocabulary words swapped, both absent from the probe texts:
    the probe ids and every load route stay right, only the vocabulary compared whole differs."""
    import json
    from pathlib import Path

    from suite.train.probes import PROBE_TEXTS

    path = Path(saved) / "tokenizer.json"
    if not path.is_file():
        return
    doc = json.loads(path.read_text())
    vocab = doc["model"]["vocab"]
    probed = {w for text in PROBE_TEXTS for w in text.split()}
    a, b = sorted((t for t in vocab if t not in probed and t.isalpha()), key=vocab.get)[-2:]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    path.write_text(json.dumps(doc))


def _truncate(saved: Any, name: str) -> None:
    from pathlib import Path

    path = Path(saved) / name
    if path.is_file():
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


SAVING_FAULTS: dict[str, Callable[[Any], None]] = {
    "save_no_tokenizer_file": drop_tokenizer_file,
    "save_corrupt_adapter_config": corrupt_adapter_config,
    "save_no_config": drop_model_config,
    "save_truncated_weights": truncate_weights,
    "save_raises": save_raises,
    "save_vocab_swapped": swap_vocabulary_ids,
}
