"""A sharded checkpoint resumes: 2 FSDP2 ranks stopped and resumed in new processes train as the uninterrupted run.

Launch 1 (2 gloo ranks, each method in turn): a tiny Llama (full fine-tune, and a LoRA adapter), each decoder
layer and the root sharded with `fully_shard` (suite/train/wrapped.py `shard_model`, as the fully_shard rows
shard), trained STEPS steps by a plain loop (AdamW; batches fixed by the step's index, each rank its half), with
a sharded checkpoint of the model and the optimizer written at step STOP by torch.distributed.checkpoint
(`get_state_dict` then `dcp.save`: each rank writes its own shards). Launch 2 (new processes): the same model
built and sharded afresh, the checkpoint read back (`dcp.load`, `set_state_dict`), steps STOP..STEPS trained.
The resumed steps' losses and the final weights are compared with the uninterrupted run's. The fault
`weights_only` (in launch 2, after the right resume) reads the model's shards back but not the optimizer's (a
fresh AdamW: its moments and step count lost), which the relation must catch.

    python -m suite.run.distributed_resume   # a JSON line per method
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


STEPS, STOP, MICRO, SEQ, VOCAB = 6, 3, 2, 16, 128  # micro-batch per rank; the checkpoint after step STOP
# the two models trained: a label (the files' and the report's) and whether a LoRA adapter is what trains
METHODS = (("full", False), ("lora", True))


@dataclass
class ResumeDiff:
    """A resumed run against the uninterrupted one: the resumed steps' losses and the final (trained) weights."""

    method: str
    resumed_steps: int
    max_loss_diff: float
    max_weight_diff: float
    fault_max_loss_diff: float  # weights_only: the optimizer's state not read back
    fault_max_weight_diff: float


def _model(adapter: bool):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg)
    if adapter:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0,
                                                 init_lora_weights="gaussian"))
    return model


def _sharded(adapter: bool):
    import torch

    from suite.train.wrapped import shard_model

    model = _model(adapter)
    shard_model(model)
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)


def _steps(model, optim, first: int, last: int, rank: int) -> list[float]:
    """Steps first..last-1 on this rank's half of each step's batch; the loss averaged over the ranks."""
    import torch
    import torch.distributed as dist

    data = torch.randint(0, VOCAB, (STEPS, 2 * MICRO, SEQ), generator=torch.Generator().manual_seed(2))
    losses = []
    for step in range(first, last):
        batch = data[step][rank * MICRO:(rank + 1) * MICRO]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        mean = loss.detach().clone()
        dist.all_reduce(mean)  # a sum (gloo has no AVG)
        losses.append(mean.item() / dist.get_world_size())
    return losses


def _trained(model, adapter: bool) -> dict:
    """The full state dict's trained tensors (a collective; rank 0 holds them)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().clone() for k, v in state.items() if not adapter or "lora_" in k}


def _run(method: str, adapter: bool, out: Path, rank: int) -> None:
    """The uninterrupted run, writing the sharded checkpoint at step STOP as it passes."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model, optim = _sharded(adapter)
    losses = _steps(model, optim, 0, STOP, rank)
    model_sd, optim_sd = get_state_dict(model, optim)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(out / method / "ckpt"))
    losses += _steps(model, optim, STOP, STEPS, rank)
    state = _trained(model, adapter)
    if rank == 0:
        torch.save({"losses": losses, "state": state}, out / method / "whole.pt")


def _resume(method: str, adapter: bool, out: Path, rank: int, fault: str) -> None:
    """New processes: build, shard, read the checkpoint back (the optimizer's too unless the fault), go on."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_model_state_dict, set_state_dict

    model, optim = _sharded(adapter)
    model_sd, optim_sd = get_state_dict(model, optim)  # the shapes to read into (the optimizer's states too)
    if fault == "weights_only":
        dcp.load({"model": model_sd}, checkpoint_id=str(out / method / "ckpt"))
        set_model_state_dict(model, model_sd)
    else:
        state = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, checkpoint_id=str(out / method / "ckpt"))
        set_state_dict(model, optim, model_state_dict=state["model"], optim_state_dict=state["optim"])
    losses = _steps(model, optim, STOP, STEPS, rank)
    trained = _trained(model, adapter)
    if rank == 0:
        torch.save({"losses": losses, "state": trained}, out / method / f"resumed{'.' + fault if fault else ''}.pt")


def rank_main(phase: str, out: str) -> None:
    """One of two ranks: every method's uninterrupted run (phase run), or its resumes (phase resume)."""
    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        for method, adapter in METHODS:
            (Path(out) / method).mkdir(parents=True, exist_ok=True)
            if phase == "run":
                _run(method, adapter, Path(out), rank)
            else:
                _resume(method, adapter, Path(out), rank, "")
                _resume(method, adapter, Path(out), rank, "weights_only")
        dist.barrier()  # rank 0's files are written before either rank tears down
    finally:
        dist.destroy_process_group()


def _launch(phase: str, out: str, timeout_s: float) -> None:
    """Two ranks by torchrun on a free port, in their own process group: a timeout kills both."""
    from suite.run.distributed import run_two_ranks

    run_two_ranks("suite.run.distributed_resume", [phase, out], timeout_s, what=f"{phase}: the two ranks")


def _diff(a: dict, b: dict) -> tuple[float, float]:
    if sorted(a["state"]) != sorted(b["state"]):
        raise RuntimeError(f"the trained tensors differ in name: {sorted(set(a['state']) ^ set(b['state']))[:5]}")
    loss = max(abs(x - y) for x, y in zip(a["losses"][STOP:], b["losses"]))
    weight = max((a["state"][k].float() - b["state"][k].float()).abs().max().item() for k in a["state"])
    return loss, weight


def compare(timeout_s: float = 300) -> list[ResumeDiff]:
    """Both launches; per method the right resume's and the fault's largest differences from the whole run."""
    import torch

    with tempfile.TemporaryDirectory() as out:
        _launch("run", out, timeout_s)
        _launch("resume", out, timeout_s)
        diffs = []
        for method, _ in METHODS:
            whole, right, fault = (torch.load(Path(out) / method / f"{name}.pt")
                                   for name in ("whole", "resumed", "resumed.weights_only"))
            diffs.append(ResumeDiff(method, len(right["losses"]), *_diff(whole, right), *_diff(whole, fault)))
        return diffs


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--rank":
        rank_main(sys.argv[2], sys.argv[3])
    else:
        for diff in compare():
            print(json.dumps(asdict(diff)))
