"""The adapter saved from a sharded model equals the one saved unsharded: keys, shapes and values.

Two gloo ranks on a CPU build the same tiny Llama with a LoRA adapter (peft, gaussian init: every tensor distinct
and non-zero); rank 0 saves it unsharded with peft's `save_pretrained`; then both ranks shard it with FSDP2 as the
fully_shard rows do (suite/train/wrapped.py `shard_model`) and save it as those rows do (`save_full`: the full
state dict gathered with `get_model_state_dict(..., StateDictOptions(full_state_dict=True))`, written through
peft). The parent compares the two adapter files. Faults the comparison must catch, saved in the same launch:
`local_shard` (rank 0 writes its own shard of every tensor), `prefixed` (keys keep a wrapper's prefix, FSDP1's
`_fsdp_wrapped_module.`), and `trainer_save` (what transformers' Trainer.save_model does on such a model when
accelerate has no FSDP plugin: rank 0 alone saves the model's own state dict of DTensors).

Under DeepSpeed ZeRO-3 (`compare("deepspeed")`, the zero3 rows' sharding) the same adapter is partitioned across the
ranks by the engine, and saved as the Trainer's `save_model` does under ZeRO-3: the partitions gathered into one
state dict by the engine (`_zero3_consolidated_16bit_state_dict`, what accelerate's `get_state_dict` calls when the
config asks `stage3_gather_16bit_weights_on_model_save`), written by peft on rank 0. Its fault: `partitioned`,
rank 0 saving the model's own parameters without the gather (ZeRO-3 leaves each rank empty placeholders).

    python -m suite.run.distributed_adapter [deepspeed]   # a JSON line for the sharded save and one per fault
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


FAULTS = ("local_shard", "prefixed", "trainer_save")
ZERO3_FAULTS = ("partitioned",)
SHARDERS = {"torch": FAULTS, "deepspeed": ZERO3_FAULTS}  # who shards the model (FSDP2, ZeRO-3) -> wrong saves caught
ADAPTER_FILE = "adapter_model.safetensors"
PREFIX = "_fsdp_wrapped_module."  # FSDP1's wrapper prefix, left in by a save that does not strip it


@dataclass
class AdapterDiff:
    """Two saved adapters compared: what only one holds, what differs in shape, the largest value difference."""

    keys: int
    only_unsharded: list[str] = field(default_factory=list)
    only_sharded: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)  # "key: unsharded shape vs sharded shape"
    max_abs_diff: float = 0.0
    error: str | None = None  # the sharded save raised, or wrote no adapter file

    @property
    def equal(self) -> bool:
        return (self.error is None and not self.only_unsharded and not self.only_sharded and not self.shapes
                and self.max_abs_diff == 0.0)


def _model():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                            lora_dropout=0.0, init_lora_weights="gaussian"))


def _save_sharded(model, directory: Path, main: bool, fault: str) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.tensor import DTensor

    from suite.train.wrapped import save_full

    if fault == "local_shard" and main:
        state = {k: v.to_local() if isinstance(v, DTensor) else v for k, v in model.state_dict().items()}
        model.save_pretrained(str(directory), state_dict=state)
    elif fault == "prefixed":
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if main:
            model.save_pretrained(str(directory), state_dict={PREFIX + k: v for k, v in state.items()})
    elif fault == "trainer_save" and main:
        model.save_pretrained(str(directory))
    elif not fault:
        save_full(model, directory, main)


def _save_zero3(engine, model, directory: Path, main: bool, fault: str) -> None:
    if fault == "partitioned" and main:
        model.save_pretrained(str(directory))
    elif not fault:
        state = engine._zero3_consolidated_16bit_state_dict()  # a collective: every rank gathers, rank 0 keeps
        if main:
            model.save_pretrained(str(directory), state_dict=state)


def rank_main(out: str, sharder: str = "torch") -> None:
    """One of two ranks: the unsharded save (rank 0), FSDP2 or ZeRO-3, then the sharded save and each fault's, each
    in its own folder (one launch for all: starting two ranks is most of the time); what raised goes to a file."""
    import torch
    import torch.distributed as dist

    from suite.train.wrapped import shard_model, zero_engine

    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    deepspeed = sharder == "deepspeed"
    if not deepspeed:
        dist.init_process_group("gloo")  # DeepSpeed starts its own (zero_engine)
    try:
        model = _model()
        if rank == 0:
            model.save_pretrained(str(Path(out) / "unsharded"))
        engine = zero_engine(model, 3, 1)[0] if deepspeed else None
        if engine is None:
            shard_model(model)
        for fault in ("", *SHARDERS[sharder]):  # trainer_save last: it raises on rank 0 alone
            try:
                if engine is not None:
                    _save_zero3(engine, model, Path(out) / (fault or "sharded"), rank == 0, fault)
                else:
                    _save_sharded(model, Path(out) / (fault or "sharded"), rank == 0, fault)
            except Exception as exc:  # noqa: BLE001 - a save that raises is the finding, written for the parent
                (Path(out) / f"error.{fault or 'sharded'}.rank{rank}").write_text(f"{type(exc).__name__}: {exc}"[:500])
        dist.barrier()  # rank 0's files are written before either rank tears down
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def compare_dirs(unsharded: Path, sharded: Path) -> AdapterDiff:
    """Keys, shapes and values of two saved adapters (peft's safetensors file in each folder)."""
    from safetensors.torch import load_file

    a = load_file(str(unsharded / ADAPTER_FILE))
    if not (sharded / ADAPTER_FILE).is_file():
        return AdapterDiff(len(a), error=f"no {ADAPTER_FILE} in {sharded}")
    b = load_file(str(sharded / ADAPTER_FILE))
    common = sorted(set(a) & set(b))
    diff = AdapterDiff(len(a), sorted(set(a) - set(b)), sorted(set(b) - set(a)),
                       [f"{k}: {list(a[k].shape)} vs {list(b[k].shape)}" for k in common if a[k].shape != b[k].shape])
    same = [k for k in common if a[k].shape == b[k].shape]
    diff.max_abs_diff = max(((a[k].float() - b[k].float()).abs().max().item() for k in same), default=0.0)
    return diff


def compare(sharder: str = "torch", timeout_s: float = 240) -> dict[str, AdapterDiff]:
    """Launch the two ranks (torchrun, a free port, in their own process group: a timeout kills both); the
    sharded save ("") and each fault's, compared with the unsharded save."""
    from suite.run.distributed import run_two_ranks

    with tempfile.TemporaryDirectory() as out:
        run_two_ranks("suite.run.distributed_adapter", [out, sharder], timeout_s, what=f"{sharder}: the two ranks")
        diffs = {}
        for fault in ("", *SHARDERS[sharder]):
            name = fault or "sharded"
            diffs[fault] = compare_dirs(Path(out) / "unsharded", Path(out) / name)
            errors = sorted(Path(out).glob(f"error.{name}.rank*"))
            if errors:
                diffs[fault].error = "; ".join(f"{p.name.rsplit('.', 1)[1]}: {p.read_text()}" for p in errors)
        return diffs


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "--rank":
        rank_main(*sys.argv[2:])
    else:
        for fault, diff in compare(*sys.argv[1:2]).items():
            print(json.dumps({"fault": fault or None, **asdict(diff)}))
