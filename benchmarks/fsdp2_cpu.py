"""FSDP2 (and DDP) on a CPU: 2 gloo ranks x micro-batch b against 1 process x 2b, a tiny Llama, full and LoRA.

Each rank shards every decoder layer and then the root with `torch.distributed.fsdp.fully_shard` (or wraps the
model in torch's DistributedDataParallel, `--wrap ddp`), and trains
with a plain loop of the suite's own (AdamW; the mean cross-entropy of rows of equal length, no padding,
so the mean over the ranks' micro-batches is the mean over the whole batch, and FSDP2's reduce-scatter
averages the gradients over the ranks): the same steps as one process on the whole batch. Per step the
loss (averaged over the ranks) and at the end the full state dict (gathered with
`get_model_state_dict(..., StateDictOptions(full_state_dict=True))`) are compared with the single process's.
`--fault same_rows` gives both ranks the first half of every batch (a sampler that does not split the data):
the relation must break. What wrapped the model is recorded with suite/train/wrapped.py's `describe`.

    python benchmarks/fsdp2_cpu.py [full|lora ...] [--wrap fsdp2|ddp|zero2|zero3] [--fault same_rows]  # a line per method
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from suite.train.payload import Strategy

ROOT = Path(__file__).resolve().parents[1]
STEPS, MICRO, SEQ, VOCAB = 6, 2, 16, 128  # micro-batch b per rank; the single process takes 2b


def _model(method: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(1)
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0,
                                                 init_lora_weights="gaussian"))  # lora_B non-zero: every step moves
    return model


def _shard(model) -> None:
    """FSDP2: each decoder layer a unit, then the root (the per-layer sharding the issue measured)."""
    from torch.distributed.fsdp import fully_shard

    for module in model.modules():
        if type(module).__name__ == "LlamaDecoderLayer":
            fully_shard(module)
    fully_shard(model)


def _zero_state(engine) -> dict:
    """The whole state dict of a DeepSpeed engine's module: ZeRO-3's partitions gathered (a collective)."""
    import deepspeed

    params = list(engine.module.parameters())
    with deepspeed.zero.GatheredParameters(params, enabled=any(hasattr(p, "ds_id") for p in params)):
        return {k: v.detach().clone() for k, v in engine.module.state_dict().items()}


def rank_main(method: str, wrap: str, fault: str, out: str) -> None:
    """One process (world 1: the whole batch) or one rank of two (its half): train, then write the curve and
    the full state dict (rank 0). The wrapped model lives only in `_train`: a DDP model alive as the group ends
    can deadlock its teardown (suite/run/ranks.py, measured), so the group is ended once `_train` has returned."""
    import torch
    import torch.distributed as dist

    from suite.run.ranks import end_process_group

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if world > 1 and not wrap.startswith("zero"):  # DeepSpeed starts its own (in one process too): _zero
        dist.init_process_group("gloo")
    losses, state, strategy = _train(method, wrap, fault, world, rank)
    if rank == 0:
        torch.save(state, Path(out) / "state.pt")
        (Path(out) / "run.json").write_text(json.dumps({"losses": losses, "strategy": strategy.to_dict()}))
    if dist.is_initialized():
        end_process_group()  # no DDP model left, a barrier (rank 0's files are written), the group destroyed


def _train(method: str, wrap: str, fault: str, world: int, rank: int) -> tuple[list[float], dict, Strategy]:
    """Wrap and train; the per-step losses (averaged over the ranks), the full state dict (every rank gathers it
    from FSDP2's shards) and what wrapped the model."""
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from suite.train.wrapped import describe, zero_engine

    model = _model(method)
    engine = None
    if wrap.startswith("zero"):  # DeepSpeed in one process too: its launch is torchrun's either way
        engine, optim = zero_engine(model, int(wrap[4:]), MICRO if world > 1 else 2 * MICRO)
    elif world > 1:
        if wrap == "ddp":
            model = torch.nn.parallel.DistributedDataParallel(model)
        else:
            _shard(model)
    if engine is None:
        optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    data = torch.randint(0, VOCAB, (STEPS, 2 * MICRO, SEQ), generator=torch.Generator().manual_seed(2))
    losses = []
    for step in range(STEPS):
        batch = data[step]
        if world > 1:
            start = 0 if fault == "same_rows" else rank * MICRO
            batch = batch[start:start + MICRO]
        loss = (engine or model)(input_ids=batch, labels=batch).loss
        if engine is not None:
            engine.backward(loss)
            engine.step()
        else:
            loss.backward()
            optim.step()
            optim.zero_grad()
        mean = loss.detach().clone()
        if world > 1:
            dist.all_reduce(mean)  # a sum (gloo has no AVG)
            mean /= world
        losses.append(mean.item())
    if engine is not None:
        state = _zero_state(engine)
    elif world > 1 and wrap != "ddp":
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        state = getattr(model, "module", model).state_dict()
    return losses, {k: v.detach().clone() for k, v in state.items()}, describe(engine or model)


def _launch(method: str, wrap: str, world: int, fault: str, out: str, timeout_s: float = 300) -> None:
    """One process, or two ranks by suite/run/distributed.py's `run_two_ranks` (torchrun on a free port; at the
    deadline it names the rank still running and where, and kills every process of the launch)."""
    from suite.run.distributed import run_two_ranks

    if world > 1 or wrap.startswith("zero"):  # DeepSpeed's one process is torchrun's too
        run_two_ranks("benchmarks.fsdp2_cpu", [method, wrap, fault, out], timeout_s,
                      what=f"{wrap} {method}: {world} rank(s)", nproc=world)
        return
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rank", method, wrap, fault, out]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(cmd)}: no end after {timeout_s:.0f} s") from exc
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")


def compare(method: str, fault: str = "", wrap: str = "fsdp2") -> dict:
    """Run one process x 2b and 2 ranks x b (FSDP2 or DDP); the largest loss and weight differences, and what
    wrapped the model."""
    import torch

    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        _launch(method, wrap, 1, fault, one)
        _launch(method, wrap, 2, fault, two)
        a, b = (json.loads((Path(d) / "run.json").read_text()) for d in (one, two))
        sa, sb = (torch.load(Path(d) / "state.pt") for d in (one, two))
    if sorted(sa) != sorted(sb):
        raise RuntimeError(f"the state dicts' keys differ: {sorted(set(sa) ^ set(sb))[:5]}")
    trained = [k for k in sa if "lora_" in k] if method == "lora" else list(sa)
    return {"method": method, "wrap": wrap, "fault": fault or None, "steps": STEPS, "micro_batch": MICRO,
            "loss_first": a["losses"][0], "loss_last": a["losses"][-1],
            "max_loss_diff": max(abs(x - y) for x, y in zip(a["losses"], b["losses"])),
            "max_weight_diff": max((sa[k].float() - sb[k].float()).abs().max().item() for k in trained),
            "tensors_compared": len(trained), "strategy": b["strategy"]}


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--rank":
        rank_main(*sys.argv[2:])
    else:
        args = sys.argv[1:]
        fault = args[args.index("--fault") + 1] if "--fault" in args else ""
        wrap = args[args.index("--wrap") + 1] if "--wrap" in args else "fsdp2"
        methods = [a for a in args if a in ("full", "lora")] or ["full", "lora"]
        for m in methods:
            print(json.dumps(compare(m, fault, wrap=wrap)), flush=True)
