"""Side by side within one run: the same case with one thing changed (unsloth vs HF QLoRA, FA2 vs
SDPA, packing vs not, ...), as speed and memory ratios, next to the published figure where one exists.

Pairs come from the records themselves: a variant and its reference share model, dataset and loss,
and differ by one method step (unsloth -> qlora -> lora -> full), by one feature, or by the trainer (the plain
transformers Trainer against trl's SFTTrainer with the same adapter: the twin the variant's record names,
each side labelled as its own record says, never from today's backends). Repeats count
by their median. Nothing here is a verdict: ratios of single CPU timings are noise-prone, and the
published figures were measured on other GPUs, versions and data (their source says which).
"""
from __future__ import annotations

import fnmatch
import statistics
from dataclasses import dataclass

import pandas as pd

from suite.records.record import BackendInfo, CaseRecord
from suite.records.runs import Run
from suite.matrix.axes import METHODS
from suite.report.compare import metric_values

# variant method -> its reference: the method one change away, as the matrix declares it
METHOD_STEPS = {name: m.steps_from for name, m in METHODS.items() if m.steps_from}
FEATURE_STEPS = ("flash_attn", "eager", "packing", "neftune", "gradient_checkpointing", "liger", "adamw_8bit")
# variant feature -> the feature it replaces: the two ways an adapter carries added tokens' rows
FEATURE_SWAPS = {"trainable_tokens": "modules_to_save"}
INTRO = ("The same case with one thing changed: variant tokens/s over the reference's, the change in peak "
         "memory and in checkpoint size (medians of repeats). Informative, not gated.")
COLUMNS = ["comparison", "variant", "reference", "speed_ratio", "memory_change", "memory_metric", "variant_mfu",
           "reference_mfu", "published_speed_ratio", "published_memory_change", "published_source",
           "checkpoint_change"]


@dataclass(frozen=True)
class Published:
    comparison: str
    model_glob: str  # on the suite's model name
    speed_ratio: float | None
    memory_change: float | None
    source: str


# The trl docs' Unsloth table (SFTTrainer docs, "Accelerate fine-tuning 2x using unsloth"): 1x A100
# 40GB, Slim Orca, QLoRA; columns HF, HF + Flash Attention, Unsloth, Unsloth's VRAM saving.
_TRL_TABLE = "trl docs, Unsloth table (1x A100 40GB, Slim Orca, QLoRA, late 2023)"
PUBLISHED = (
    Published("unsloth vs HF qlora", "llama2-7b*", 1.87, -0.393, _TRL_TABLE + ": Llama-2 7b"),
    Published("unsloth vs HF qlora", "mistral-7b*", 1.88, -0.659, _TRL_TABLE + ": Mistral 7b"),
    Published("+flash_attn", "llama2-7b*", 0.96, None, _TRL_TABLE + ": Llama-2 7b, HF + Flash Attention vs "
              "HF (the HF attention of then, not necessarily today's SDPA)"),
    Published("+flash_attn", "mistral-7b*", 1.17, None, _TRL_TABLE + ": Mistral 7b, HF + Flash Attention vs HF"),
    # trl docs, "Liger Kernel Integration": "increase multi-GPU training throughput by 20% and reduce memory
    # usage by 60%" (Liger's benchmark: LLaMA 3-8B, batch 8, bf16, AdamW, gradient checkpointing, FSDP1 on 8 A100s)
    Published("+liger", "*", 1.20, -0.60, "trl docs, Liger Kernel Integration (LLaMA 3-8B, batch 8, bf16, gradient "
              "checkpointing, FSDP1 on 8x A100): +20% multi-GPU throughput, -60% memory"),
)


def _key(rec: CaseRecord) -> tuple:
    return rec.model_name, rec.trainer, rec.method, frozenset(rec.features), rec.dataset, rec.loss


def _median(recs: list[CaseRecord], metric: str) -> float | None:
    vals = metric_values(recs, metric)
    return statistics.median(vals) if vals else None


def _backend(recs: list[CaseRecord]) -> BackendInfo | None:
    """What the records of one case say trained them (the first that says)."""
    return next((r.backend for r in recs if r.backend is not None), None)


def _memory_metric(recs: list[CaseRecord]) -> str:
    return "cuda_max_reserved_gib" if _median(recs, "cuda_max_reserved_gib") is not None else "peak_rss_gib"


def _published(comparison: str, model: str | None) -> Published | None:
    return next((p for p in PUBLISHED if p.comparison == comparison and model
                 and fnmatch.fnmatchcase(model, p.model_glob)), None)


def _method_label(variant: str, reference: str) -> str:
    """`qlora vs lora`; across libraries the reference's is named: `unsloth vs HF qlora`."""
    other = METHODS[reference].library
    same = METHODS[variant].library == other
    return f"{variant} vs {reference}" if same else f"{variant} vs {other.label} {reference}"


def _pairs(groups: dict[tuple, list[CaseRecord]]):
    for key in groups:
        model, trainer, method, features, dataset, loss = key
        if method in METHOD_STEPS:
            ref = (model, trainer, METHOD_STEPS[method], features, dataset, loss)
            if ref in groups:
                yield _method_label(method, METHOD_STEPS[method]), key, ref
        for feat in FEATURE_STEPS:
            if feat in features:
                ref = (model, trainer, method, features - {feat}, dataset, loss)
                if ref in groups:
                    yield f"+{feat}", key, ref
        for feat, other in FEATURE_SWAPS.items():
            if feat in features:
                ref = (model, trainer, method, (features - {feat}) | {other}, dataset, loss)
                if ref in groups:
                    yield f"{feat} vs {other}", key, ref
        variant = _backend(groups[key])
        if variant is not None and variant.twin:  # the trainer its backend does the same job as
            ref = (model, variant.twin, method, features, dataset, loss)
            reference = _backend(groups[ref]) if ref in groups else None
            if reference is not None:
                yield f"{variant.label} vs {reference.trainer_class} {method}", key, ref


def frame(run: Run) -> pd.DataFrame:
    """One row per (variant, reference) pair of the run's measured cases."""
    groups: dict[tuple, list[CaseRecord]] = {}
    ids: dict[tuple, str] = {}
    for rec in run.records:
        if rec.measured and rec.metrics:
            groups.setdefault(_key(rec), []).append(rec)
            ids[_key(rec)] = rec.case_id
    rows = []
    for comparison, var, ref in _pairs(groups):
        v, r = groups[var], groups[ref]
        vt, rt = _median(v, "tokens_per_s"), _median(r, "tokens_per_s")
        mem = _memory_metric(r)
        vm, rm = _median(v, mem), _median(r, mem)
        pub = _published(comparison, var[0])
        rows.append({
            "comparison": comparison, "variant": ids[var], "reference": ids[ref],
            "speed_ratio": vt / rt if vt and rt else None,
            "memory_change": _change_of(vm, rm), "memory_metric": mem,
            "variant_mfu": _median(v, "mfu"), "reference_mfu": _median(r, "mfu"),
            "published_speed_ratio": pub.speed_ratio if pub else None,
            "published_memory_change": pub.memory_change if pub else None,
            "published_source": pub.source if pub else "",
            "checkpoint_change": _change_of(_median(v, "checkpoint_bytes"), _median(r, "checkpoint_bytes")),
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["comparison", "variant"], kind="stable").reset_index(drop=True)


def _change_of(v: float | None, r: float | None) -> float | None:
    return (v - r) / r if v is not None and r else None


def _ratio(x: float | None) -> str:
    return "-" if x is None or pd.isna(x) else f"{x:.2f}x"


def _change(x: float | None) -> str:
    return "-" if x is None or pd.isna(x) else f"{x * 100:+.1f}%"


def _mfu(x: float | None) -> str:
    return "-" if x is None or pd.isna(x) else f"{x * 100:.1f}%"


def table_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells, shared by the Markdown and HTML renderers."""
    headers = ["comparison", "variant", "reference", "speed (tokens/s)", "memory", "MFU variant / ref",
               "published speed", "published memory", "checkpoint"]
    rows = [[r.comparison, r.variant, r.reference, _ratio(r.speed_ratio),
             _change(r.memory_change) + ("" if r.memory_metric == "peak_rss_gib" else " (CUDA reserved)"),
             f"{_mfu(r.variant_mfu)} / {_mfu(r.reference_mfu)}" if not pd.isna(r.variant_mfu) else "-",
             _ratio(r.published_speed_ratio), _change(r.published_memory_change), _change(r.checkpoint_change)]
            for r in df.itertuples()]
    return headers, rows


def sources(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(s for s in df["published_source"] if s))


def routes_table(run: Run) -> tuple[list[str], list[list[str]], list[str]]:
    """Which load routes each trainer and method's checkpoints went through in this run (docs/checks.md):
    per route, how many cases it loaded and how many of those passed, or n/a; and why each n/a is."""
    seen: dict[tuple[str, str], dict[str, list]] = {}
    order: list[str] = []
    for rec in run.records:
        for r in (rec.reload or {}).get("routes") or []:
            route = r.get("route")
            if route not in order:
                order.append(route)
            cell = seen.setdefault((rec.trainer or "sft", rec.method or "?"), {}).setdefault(route, [0, 0, ""])
            if r.get("status") == "not_applicable":
                cell[2] = cell[2] or str(r.get("reason") or "not applicable")
                continue
            cell[0] += 1
            cell[1] += int(any(c.get("name") == f"reload/{route}" and c.get("passed") for c in rec.checks))
    if not seen:
        return [], [], []
    rows, why = [], {}
    for (trainer, method), cells in sorted(seen.items()):
        rows.append([trainer, method] + [
            (f"{c[1]}/{c[0]} passed" if c[0] else "n/a") if (c := cells.get(route)) else "-" for route in order])
        for route, c in cells.items():
            if c[2]:
                why.setdefault(f"{route}: {c[2]}", []).append(f"{trainer} {method}")
    notes = [f"{reason} ({', '.join(who)})" for reason, who in why.items()]
    return ["trainer", "method", *order], rows, notes
