"""Save/load invariants: a saved adapter reloads to the same logits, and merging keeps them."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from suite.invariants import harness as h
from suite.invariants.relations import Verdict, compare
from suite.train import args as train_args
from suite.train import probes
from suite.train.quantize import quantizer_for


def _probe(tokenizer) -> dict:
    return dict(tokenizer(probes.PROBE_TEXTS, return_tensors="pt", padding=True))


def _reload(case, model_path: str, saved: Path, dequantize: bool = False):
    """The adapter loaded as a user would: a fresh base (4-bit for QLoRA, or that base dequantised)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_path, **train_args.model_init_kwargs(case, "cpu", torch.float32))
    if dequantize:
        base = base.dequantize()
    return PeftModel.from_pretrained(base, str(saved))


def measure_save_load(method: str, out: Path, *, corrupt: Callable[[Path], None] | None = None,
                      before_merge: Callable | None = None, steps: int = 3) -> list[Verdict]:
    """Train an adapter, save it, load it onto a fresh base, then merge it.

    QLoRA merges twice: into the dequantised base (how a QLoRA adapter is meant to be merged)
    and straight into the 4-bit base, which peft does by requantising W + BA to nf4.
    """
    case = h.tiny_case(method, max_steps=steps)
    built = h.build_trainer(case, out / "trainer")
    built.trainer.train()
    probe = _probe(built.tokenizer)
    trained = h.plain_logits(built.trainer.model, probe)
    saved = out / "adapter"
    built.trainer.save_model(str(saved))
    if corrupt is not None:
        corrupt(saved)
    reloaded = _reload(case, built.model_path, saved)
    unmerged = h.plain_logits(reloaded, probe)
    what = f"{method}, {steps} steps, probe {tuple(trained.shape)}"
    if not quantizer_for(case).merges_dequantized:
        if before_merge is not None:
            before_merge(reloaded)
        merged = h.plain_logits(reloaded.merge_and_unload(), probe)
        return [compare("save_load.reload", unmerged, trained, what),
                compare("save_load.merge", merged, unmerged, what)]
    merged_4bit = h.plain_logits(reloaded.merge_and_unload(), probe)
    dequantised = _reload(case, built.model_path, saved, dequantize=True)
    if before_merge is not None:
        before_merge(dequantised)
    merged = h.plain_logits(dequantised.merge_and_unload(), probe)
    return [compare("save_load.reload_qlora", unmerged, trained, what),
            compare("save_load.merge_qlora", merged, unmerged, what + ", merged into the dequantised base"),
            compare("save_load.merge_qlora_4bit", merged_4bit, unmerged, what + ", merged into the 4-bit base")]


def drop_lora_b(saved: Path) -> None:
    """Save the wrong tensors: an adapter file without its lora_B matrices (peft reloads them as zeros)."""
    from safetensors.torch import load_file, save_file

    path = saved / "adapter_model.safetensors"
    tensors = {k: v for k, v in load_file(str(path)).items() if "lora_B" not in k}
    save_file(tensors, str(path), metadata={"format": "pt"})


def double_lora_b(model) -> None:
    """Merge a different adapter than the one that ran: lora_B doubled just before merging."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(2)
