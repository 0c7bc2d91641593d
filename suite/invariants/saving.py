"""Save/load invariants: a saved adapter reloads to the same logits, and merging keeps them. Loading and
merging are the load routes' own functions (suite/train/routes.py): one place for each."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from suite.invariants import harness as h
from suite.invariants.relations import Verdict, compare
from suite.train import args as train_args
from suite.train import probes, routes
from suite.train.inject import drop_lora_b
from suite.train.quantize import quantizer_for

# The library functions each relation here must not call to compute what it expects (issue 36: a relation
# that calls the function it judges cannot see a change inside it); tests/judge/test_oracles.py scans the
# module for them. An empty tuple: the relation compares two real runs, or the trainer's output with the
# case's own settings, and computes no expected value a library function could supply.
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "save_load.reload": (),
    "save_load.merge": (),
    "save_load.reload_qlora": (),
    "save_load.merge_qlora": (),
    "save_load.merge_qlora_4bit": (),
}

__all__ = ["measure_save_load", "drop_lora_b", "double_lora_b", "double_fused_lora_b"]


def _probe(tokenizer) -> dict:
    return dict(tokenizer(probes.PROBE_TEXTS, return_tensors="pt", padding=True))


def _reload(case, model_path: str, saved: Path, dequantize: bool = False):
    """The adapter loaded as a user would: a fresh base (4-bit for QLoRA, or that base dequantised)."""
    import torch

    ctx = routes.Context(case, model_path, saved, train_args.model_init_kwargs(case, "cpu", torch.float32), "cpu",
                         probe=None, generated=None, scratch=saved.parent / "routes")
    return routes.peft_model(ctx, dequantize=dequantize)


def measure_save_load(method: str, out: Path, *, corrupt: Callable[[Path], None] | None = None,
                      before_merge: Callable | None = None, steps: int = 3, arch: str = "llama") -> list[Verdict]:
    """Train an adapter, save it, load it onto a fresh base, then merge it.

    QLoRA merges twice: into the dequantised base (how a QLoRA adapter is meant to be merged)
    and straight into the 4-bit base, which peft does by requantising W + BA to nf4.
    """
    case = h.tiny_case(method, max_steps=steps, arch=arch)
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
    what = f"{method}, {steps} steps, probe {tuple(trained.shape)}" + (f", {arch}" if arch != "llama" else "")
    if not quantizer_for(case).merges_dequantized:
        if before_merge is not None:
            before_merge(reloaded)
        merged = h.plain_logits(routes.merge(reloaded), probe)
        return [compare("save_load.reload", unmerged, trained, what),
                compare("save_load.merge", merged, unmerged, what)]
    merged_4bit = h.plain_logits(routes.merge(reloaded), probe)
    dequantised = _reload(case, built.model_path, saved, dequantize=True)
    if before_merge is not None:
        before_merge(dequantised)
    merged = h.plain_logits(routes.merge(dequantised), probe)
    return [compare("save_load.reload_qlora", unmerged, trained, what),
            compare("save_load.merge_qlora", merged, unmerged, what + ", merged into the dequantised base"),
            compare("save_load.merge_qlora_4bit", merged_4bit, unmerged, what + ", merged into the 4-bit base")]


FUSED_PROJECTIONS = ("qkv_proj", "gate_up_proj")  # Phi-3's fused projections (Phi-4-mini)


def double_fused_lora_b(model) -> None:
    """Merge another adapter than the one that ran into the fused projections only (their lora_B doubled): a
    merge that mishandles a fused projection's output split. A family without them merges as it should."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and any(f".{f}." in name for f in FUSED_PROJECTIONS):
                p.mul_(2)


def double_lora_b(model) -> None:
    """Merge a different adapter than the one that ran: lora_B doubled just before merging."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(2)
