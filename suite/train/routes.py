"""Every way a user loads a fine-tuned checkpoint back, as a declared list: one small object per route,
chosen by what the checkpoint is (an adapter, a full model, a quantized base) and by the model's head.

Each route that applies loads the checkpoint its own way and is held to the trained model: its logits
on the probe input, greedy generation of a few tokens from the probe prompt, the adapter's tensors
against the saved ones, and, for the loaders that promise an inference model (peft's, without
is_trainable=True), no trainable parameter. A route that cannot apply says why ("not applicable").
This is the one place that loads and merges an adapter: the matrix's reload, the save/load invariants
(suite/invariants/saving.py) and upgrade-check's checkpoint compatibility (suite/tools/checkpoints.py)
all come here. Heavy imports stay inside the functions.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train import compat, models, probes, tokens
from suite.train.quantize import quantizer_for

if TYPE_CHECKING:
    from suite.matrix.spec import Case

GENERATE_TOKENS = 4  # greedy tokens generated from the probe prompt, by the trained model and each route


@dataclass
class Context:
    """What every route needs: the case, where the base and the checkpoint are, how the base loads,
    and what the trained model gave (its probe logits and generated ids)."""

    case: Case
    model_path: str
    checkpoint: Path
    load_kwargs: dict
    device: str
    probe: Any  # the trained model's logits on the probe input
    generated: list[int] | None  # the trained model's greedy ids from the probe prompt
    scratch: Path  # where a route may write (a merged model, a saved quantized base)
    head: str = "causal_lm"
    held: dict = field(default_factory=dict)  # what a route keeps between loading and judging

    def tokenizer(self):
        """The tokenizer saved beside the checkpoint (the base's where none was saved)."""
        saved = self.checkpoint / "tokenizer_config.json"
        return (models.load_tokenizer(self.checkpoint, base=self.model_path) if saved.is_file()
                else models.load_tokenizer(self.model_path))


def auto_class(head: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return {"causal_lm": AutoModelForCausalLM, "seq_cls": AutoModelForSequenceClassification}[head]


def fresh_base(ctx: Context, dequantize: bool = False):
    """The base as a user loads it before an adapter: the case's load arguments, grown to the saved
    tokenizer where the chat format added tokens; dequantised on request (how a QLoRA adapter is merged)."""
    base = auto_class(ctx.head).from_pretrained(ctx.model_path, **ctx.load_kwargs)
    if ctx.case.dataset in tokens.FORMATS:  # the saved tokenizer says how far the base was grown
        tokens.resize(base, len(ctx.tokenizer()))
    return base.dequantize() if dequantize else base


def peft_model(ctx: Context, dequantize: bool = False):
    from peft import PeftModel

    return PeftModel.from_pretrained(fresh_base(ctx, dequantize), str(ctx.checkpoint))


def merge(model):
    """merge_and_unload (a seam of its own: the merge is what the merged route tests)."""
    return model.merge_and_unload()


class Route:
    name = ""
    loader = ""  # the call a user writes
    inference = False  # the loader promises an inference model: no parameter may train
    reads_adapter = True  # it reads the saved adapter files (a fault in them fails it)
    generates = True  # its model generates what the trained model generated (not a bare base)
    heads: tuple[str, ...] = ("causal_lm", "seq_cls")

    def not_applicable(self, ctx: Context) -> str | None:
        """Why the route cannot apply to this checkpoint, or None."""
        return None if ctx.case.is_adapter else "a full fine-tune's checkpoint has no adapter"

    def load(self, ctx: Context):
        raise NotImplementedError

    against = "the trained model"

    def expected(self, ctx: Context, model: Any):
        """The logits the loaded model must give: the trained model's."""
        return ctx.probe

    def bound_extra(self, ctx: Context) -> str | None:
        """The invariant relation whose tolerance this route adds to the reload bound (a merge)."""
        return None


class PeftModelRoute(Route):
    name, loader, inference = "peft_model", "PeftModel.from_pretrained(base, dir)", True

    def load(self, ctx: Context):
        return peft_model(ctx)


# The two routes through transformers' PEFT integration: where it refuses the installed peft (its
# MIN_PEFT_VERSION; the canary's transformers 5.25 asked a peft not yet released) they fail with its
# ValueError, a finding about that pair of releases that a user's load_adapter meets too, never "not
# applicable" (tests/train/test_raises.py).
INTEGRATION_ROUTES = ("transformers_adapter_dir", "load_adapter")


class TransformersAdapterDir(Route):
    name, loader = "transformers_adapter_dir", "AutoModelForCausalLM.from_pretrained(adapter_dir)"
    heads = ("causal_lm",)

    def not_applicable(self, ctx: Context) -> str | None:
        if ctx.case.dataset in tokens.FORMATS:
            return ("transformers' PEFT integration loads the base at its saved vocabulary and cannot take an "
                    "adapter whose embeddings grew with added tokens (a size mismatch; measured with "
                    "transformers 5.23.0)")
        return super().not_applicable(ctx)

    def load(self, ctx: Context):
        return auto_class(ctx.head).from_pretrained(str(ctx.checkpoint), **ctx.load_kwargs)


class LoadAdapter(Route):
    name, loader = "load_adapter", "base.load_adapter(dir)"

    def load(self, ctx: Context):
        base = fresh_base(ctx)
        base.load_adapter(str(ctx.checkpoint))
        return base


class AutoPeft(Route):
    name, loader, inference = "auto_peft", "AutoPeftModelForCausalLM.from_pretrained(dir)", True

    def load(self, ctx: Context):
        from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification

        cls = {"causal_lm": AutoPeftModelForCausalLM, "seq_cls": AutoPeftModelForSequenceClassification}[ctx.head]
        return cls.from_pretrained(str(ctx.checkpoint), **ctx.load_kwargs)


class Merged(Route):
    """merge_and_unload (into the dequantised base for a quantized one, as the seeds do), saved with
    save_pretrained and loaded back as a plain model."""

    name, loader = "merged", "merge_and_unload() + save_pretrained + from_pretrained"
    reads_adapter = False  # it reads the files through peft_model, but what it loads is a plain model

    def load(self, ctx: Context):
        merged = merge(peft_model(ctx, dequantize=quantizer_for(ctx.case).quantized))
        folder = ctx.scratch / "merged"
        merged.save_pretrained(str(folder))
        ctx.tokenizer().save_pretrained(str(folder))
        kwargs = {k: v for k, v in ctx.load_kwargs.items() if k != "quantization_config"}
        return auto_class(ctx.head).from_pretrained(str(folder), **kwargs)

    def bound_extra(self, ctx: Context) -> str | None:
        return "save_load.merge_qlora" if quantizer_for(ctx.case).quantized else "save_load.merge"


class FullModel(Route):
    name, loader, reads_adapter = "full_model", "AutoModelForCausalLM.from_pretrained(dir)", False

    def not_applicable(self, ctx: Context) -> str | None:
        return "an adapter checkpoint: the adapter routes load it" if ctx.case.is_adapter else None

    def load(self, ctx: Context):
        return auto_class(ctx.head).from_pretrained(str(ctx.checkpoint), **ctx.load_kwargs)


class QuantizedBase(Route):
    """The quantized base as bitsandbytes serializes it: save_pretrained of the loaded 4- or 8-bit model,
    from_pretrained of that folder, against the in-memory quantized model (not the adapter)."""

    name, loader, reads_adapter = "quantized_base", "quantized base: save_pretrained + from_pretrained", False
    generates = False
    against = "the quantized base as loaded in memory"
    heads = ("causal_lm",)

    def not_applicable(self, ctx: Context) -> str | None:
        return None if quantizer_for(ctx.case).quantized else "the base is not quantized"

    def load(self, ctx: Context):
        in_memory = ctx.held["in_memory"] = auto_class(ctx.head).from_pretrained(ctx.model_path, **ctx.load_kwargs)
        folder = self.save(in_memory, ctx.scratch / "quantized-base")
        return auto_class(ctx.head).from_pretrained(str(folder), **{k: v for k, v in ctx.load_kwargs.items()
                                                                     if k != "quantization_config"})

    def save(self, model: Any, folder: Path) -> Path:
        """bitsandbytes' serialization of the quantized base, what this route tests."""
        model.save_pretrained(str(folder))
        return folder

    def expected(self, ctx: Context, model: Any):
        return probe(ctx.held.pop("in_memory"), models.load_tokenizer(ctx.model_path), ctx.device, ctx.head)


# The routes of each head, in the order a record lists them; a backend that loads its own way
# (unsloth) declares its own.
ROUTES: dict[str, tuple[Route, ...]] = {
    "causal_lm": (PeftModelRoute(), TransformersAdapterDir(), LoadAdapter(), AutoPeft(), Merged(), FullModel(),
                  QuantizedBase()),
    "seq_cls": (PeftModelRoute(), AutoPeft(), Merged(), FullModel()),
}


@dataclass
class RouteOutcome:
    route: str
    loader: str
    status: str  # checked | not_applicable | error
    reason: str = ""
    max_abs_logit_diff: float | None = None
    generated: list[int] | None = None
    generation_matches: bool | None = None
    trainable_params: int | None = None
    inference: bool = False  # the loader promises an inference model
    adapter_mismatch: list[str] = field(default_factory=list)  # saved adapter tensors the loaded model lacks or changed
    generation_config: str | None = None  # what the generation config saved beside the model says, if one is
    against: str = "the trained model"
    bound_relation: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], "") or k in ("route", "status")}


def loader_label(route: Route, head: str) -> str:
    """The call a user writes for this head: the routes name the causal LM's auto classes, a sequence
    classifier loads through the ...ForSequenceClassification ones (model_class above)."""
    return route.loader if head == "causal_lm" else route.loader.replace("ForCausalLM", "ForSequenceClassification")


def check_route(route: Route, ctx: Context) -> RouteOutcome:
    """Load the checkpoint by one route and measure it against the trained model."""
    out = RouteOutcome(route.name, loader_label(route, ctx.head), "checked", inference=route.inference,
                       against=route.against)
    why = route.not_applicable(ctx) if ctx.head in route.heads else f"not a route of a {ctx.head} model"
    if why:
        out.status, out.reason = "not_applicable", why
        return out
    try:
        _measure(route, ctx, out)
    except Exception as exc:  # a route that raises, loading or measured after, is a failed route with what it said
        out.status, out.reason = "error", f"{type(exc).__name__}: {str(exc)[:500]}"
    return out


def _measure(route: Route, ctx: Context, out: RouteOutcome) -> None:
    """Load by the route and fill `out`: logits, greedy ids, trainable parameters, the adapter's tensors."""
    model = route.load(ctx)
    tokenizer = ctx.tokenizer()
    logits = probe(model, tokenizer, ctx.device, ctx.head)
    expected = route.expected(ctx, model)
    out.max_abs_logit_diff = (logits - expected).abs().max().item() if logits.shape == expected.shape else float("inf")
    out.bound_relation = route.bound_extra(ctx)
    if ctx.head == "causal_lm" and ctx.generated is not None and route.generates:
        out.generated = probes.generate(model, tokenizer, ctx.device, GENERATE_TOKENS)
        out.generation_matches = out.generated == ctx.generated
    out.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if route.reads_adapter:
        out.adapter_mismatch = adapter_mismatch(model, ctx.checkpoint)
    out.generation_config = generation_config_note(getattr(model, "name_or_path", None), tokenizer)


def probe(model: Any, tokenizer: Any, device: str, head: str):
    """The model's answer to the probe input: a causal LM's logits at the probe's tokens, a sequence
    classifier's scores per probe text."""
    if head == "causal_lm":
        return probes.probe_logits(model, tokenizer, device)
    import torch

    tokenizer.padding_side = "right"
    enc = tokenizer(probes.PROBE_TEXTS, return_tensors="pt", padding=True).to(model.device)
    model.eval()
    with torch.no_grad():
        return model(**enc).logits.float().cpu()


def check_routes(ctx: Context, routes: tuple[Route, ...]) -> list[RouteOutcome]:
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    try:
        return [check_route(route, ctx) for route in routes]
    finally:
        shutil.rmtree(ctx.scratch, ignore_errors=True)


def adapter_mismatch(model: Any, checkpoint: Path) -> list[str]:
    """The saved adapter's tensors the loaded model lacks or holds differently (keys in the saved
    file's naming; modules_to_save and trainable-token rows included)."""
    from safetensors.torch import load_file

    path = checkpoint / "adapter_model.safetensors"
    if not path.is_file():
        return []
    saved = load_file(str(path))
    loaded = _adapter_state(model)
    if loaded is None:
        return ["the loaded model holds no adapter"]
    loaded = {_plain(k): v for k, v in loaded.items()}
    out = []
    for key, tensor in saved.items():
        got = loaded.get(_plain(key))
        if got is None:
            out.append(f"{key}: missing")
        elif got.shape != tensor.shape or not bool((got.detach().cpu().to(tensor.dtype) == tensor).all()):
            out.append(f"{key}: differs")
    saved_plain = {_plain(k) for k in saved}
    # the LoRA factors the loader has and the file lacks (peft initialises a missing lora_B as zeros);
    # modules_to_save copies are named otherwise in a loaded state dict, and are matched above
    out += [f"{key}: loaded, but not in the saved file (the loader initialised it)" for key in sorted(loaded)
            if ".lora_" in key and key not in saved_plain]
    return out


def _plain(key: str) -> str:
    """A key without peft's wrapper prefix (transformers' integration names them from the base model)."""
    return key.removeprefix("base_model.model.")


def _adapter_state(model: Any) -> dict | None:
    """The adapter's state dict in the saved naming, from a PeftModel or transformers' integration."""
    from peft import PeftModel, get_peft_model_state_dict

    if isinstance(model, PeftModel):
        return get_peft_model_state_dict(model)
    if getattr(model, "_hf_peft_config_loaded", False):
        return model.get_adapter_state_dict()
    return None


def generation_config_note(folder: str | None, tokenizer: Any) -> str | None:
    """Where a generation config was saved beside the model, whether its EOS and pad ids are the tokenizer's."""
    if not folder or not (Path(folder) / "generation_config.json").is_file():
        return None
    from transformers import GenerationConfig

    gen = GenerationConfig.from_pretrained(folder)
    eos = gen.eos_token_id if not isinstance(gen.eos_token_id, list) else gen.eos_token_id[0]
    wrong = [f"{name} {got} (tokenizer: {want})" for name, got, want in (
        ("eos_token_id", eos, tokenizer.eos_token_id), ("pad_token_id", gen.pad_token_id, tokenizer.pad_token_id))
        if got is not None and got != want]
    return "differs from the tokenizer: " + ", ".join(wrong) if wrong else "matches the tokenizer"


def tokenizer_check(checkpoint: Path, trained_tokenizer: Any, model_path: str) -> dict:
    """The tokenizer saved beside the checkpoint against the one training used: the whole vocabulary (every
    token's id, added tokens included), the probe texts' ids and the chat template rendered."""
    if not (checkpoint / "tokenizer_config.json").is_file():
        return {"saved": False, "problems": []}
    saved = models.load_tokenizer(checkpoint, base=model_path)
    problems = vocabulary_differences(saved, trained_tokenizer)
    for text in probes.PROBE_TEXTS:
        if saved(text)["input_ids"] != trained_tokenizer(text)["input_ids"]:
            problems.append(f"{text!r} tokenizes to other ids")
    chat = [{"role": "user", "content": "what colour is the cat ?"}, {"role": "assistant", "content": "red"}]
    if trained_tokenizer.chat_template is not None:
        if saved.chat_template is None:
            problems.append("no chat template saved")
        elif (saved.apply_chat_template(chat, tokenize=False)
              != trained_tokenizer.apply_chat_template(chat, tokenize=False)):
            problems.append("the chat template renders another string")
    return {"saved": True, "problems": problems}


def vocabulary_differences(saved: Any, trained: Any) -> list[str]:
    """Where the saved tokenizer's vocabulary (token -> id, added tokens included) is not training's: a token
    that maps elsewhere tokenizes a text that holds it to other ids even where the probe texts do not."""
    mine, theirs = saved.get_vocab(), trained.get_vocab()
    moved = sorted(t for t in theirs if mine.get(t) != theirs[t])
    extra = sorted(set(mine) - set(theirs))
    if not moved and not extra and len(saved) == len(trained):
        return []
    examples = ", ".join(f"{t!r} {theirs[t]} -> {mine.get(t, 'absent')}" for t in moved[:3])
    return [f"the vocabulary differs: {len(moved)} of training's {len(theirs)} tokens map to another id or are "
            f"absent{' (e.g. ' + examples + ')' if examples else ''}, {len(extra)} tokens are new; "
            f"{len(saved)} tokens saved against {len(trained)} trained"]
