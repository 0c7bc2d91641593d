"""Known faults, injected on purpose to prove what the measurements can see (benchmarks/sensitivity.py).

`FTSUITE_INJECT` names them, comma-separated, e.g. `compute:0.10` (every training step does
matrix products worth a tenth of its own FLOPs, counted on the first step, on top: 10% more
arithmetic, which the counted FLOPs see exactly and the step times statistically),
`wait:0.10` (each step then sleeps a tenth of its wall time), `memory:0.05` (after the last step
the process touches memory until its peak resident memory is 5% above what it was), `forward`
(every loss computation runs one more forward pass of the model). Faults of correctness, for the
checks' tests: `adapter_init` (the adapter starts non-zero, or a full fine-tune's policy differs from its
reference: the policy is not its reference at step 1), `save_base` (the checkpoint gets the base model's
weights beside the adapter), `no_update` (the optimizer's learning rate is 0: the steps run, nothing learns,
and what the trainer logs about its preferences stays where it started). A trainer's own faults are declared
by its package (suite/train/backends/<trainer>/faults.py) and collected here through the registry (DECLARED):
the preference trainers' `reference`, the reward trainer's `drop_score`, the generating trainers'
`replay_completions`, `stale_old_logps`, `batch_baseline`. Faults of the load
routes (suite/train/routes.py), each aimed at one: `route_merge` (merge_and_unload leaves one layer
unmerged), `route_modules_to_save` (base.load_adapter leaves the modules_to_save copies at the base's
weights), `route_quantized_save` (the saved quantized base has one weight's block constants scaled);
and one in the saved files that every route reading them must see: `drop_lora_b` (the adapter file
loses its lora_B tensors, which peft then loads as zeros). A route that raises: `route_raises` (once the
checkpoint is saved, transformers' PEFT integration asks for a peft newer than the installed one, as
transformers 5.25.0 did of peft 0.21.2 in the canary of 2026-12-07: the routes through it, load_adapter's
and the adapter folder's, raise its own ValueError "The version of PEFT you are using is not compatible,
please use a version >= ..."; the case must still be judged, those routes failing with the exception). Faults of LoRA dropout (the lora_dropout
check): `dropout_off` (the adapter's dropout layers get rate 0 before training: it trains without the
dropout its config asked for), `dropout_in_eval` (its dropout layers drop in evaluation too, as if
the model were left in training mode for inference). For the mixture-of-experts checks:
`drop_expert_lora` (the adapter file loses the fused experts' LoRA tensors), `quant_skip` (the 4-bit
load leaves the attention's o_proj unquantized), inside Mixtral's modeling code `aux_softmax_twice` (its
load-balancing loss softmaxes the router probabilities again), `aux_top_k_wrong` (it takes the top 1 whatever the
config's num_experts_per_tok) and `router_probabilities` (the router records probabilities as its logits); for the causal-LM padding
invariance (suite/invariants/padding.py) `padding_mask_ignored` (Llama's forward builds a pure causal mask,
without the padding) and `pad_labelled` (the collator labels padding with the pad id, not -100); and for the router loss invariant `aux_twice` (trl
weights the auxiliary loss twice: counted twice) and `aux_dropped` (trl adds none). For the families of 2026
(cases/families.yaml), one in a family's own modeling code: `window_ignored` (Gemma 3's sliding-window layers
get the plain causal mask, as a modeling change that dropped the window would: its case's golden curve must
move, no other family's). For the training mechanics' relations (suite/train/mechanics_faults.py):
`lr_ahead`, `clip_threshold`, `decay_where_zero`, `update_overshoot`, `lora_sqrt_scale`.
Crafted changes to saving (suite/train/backends/spoil.py's SAVING_FAULTS), each a
failed check and never an error record: `save_no_tokenizer_file` (tokenizer.json is not saved),
`save_corrupt_adapter_config` (adapter_config.json cut in half), `save_no_config` (config.json is not saved),
`save_truncated_weights` (the weights' safetensors file cut in half), `save_raises` (save_model raises
OSError once the weights are written: the checkpoint check fails with it, the reload and routes still run), `save_vocab_swapped` (the saved
tokenizer.json has two words' ids swapped, words absent from the probe texts: the saved_tokenizer check alone). Unset, nothing here
runs; a record made with an injection says so in `resolved.injected`.

The training code knows nothing of these: each fault declares its Seam in SEAMS, and `install_hooks`,
the one hook, called at a case child's start when FTSUITE_INJECT is set (suite/run/runner.py), wraps
the functions and methods the faults name before anything trains (tests/test_architecture.py keeps
suite/train/ free of imports of this module).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from suite.train.backends.registry import declared_faults
from suite.train.backends import modeling_faults
from suite.train.backends.spoil import SAVING_FAULTS, after_save, drop_tensors
from suite.train.mechanics_faults import MECHANICS_FAULTS, sqrt_scaling

ENV = "FTSUITE_INJECT"


@dataclass(frozen=True)
class Seam:
    """Where the hook applies a fault: the function or method it wraps (a dotted path) and the wrapper."""

    where: str
    wrap: Callable[[Callable], Callable]


# TRAINER: on each built trainer, after its backend took the reference's snapshot and before the backend
# instruments it (the counters count what training saw, faults included); `install` applies these.
TRAINER = Seam("suite.train.backends.base.Backend.instrument", lambda original: original)
# the faults a trainer's package declares (its faults.py: `reference`, `drop_score`, the generating trainers'),
# collected through the registry and installed on the trainer beside the ones below
DECLARED = declared_faults()
SEAMS: dict[str, Seam] = {
    **{kind: TRAINER for kind in (
        "compute", "wait", "memory", "forward", "adapter_init", "save_base", "no_update", "drop_lora_b",
        "dropout_off", "dropout_in_eval", "drop_expert_lora", "aux_twice", "aux_dropped", "route_raises",
        "pad_labelled")},
    **{kind: TRAINER for kind in DECLARED},
    # the training mechanics' (suite/train/mechanics_faults.py): the schedule, the clip, the decay, the update
    **{kind: TRAINER for kind in MECHANICS_FAULTS.kinds},
    # peft's LoRA scaling alpha / sqrt(r) without rsLoRA, in training and in every reload of the adapter
    "lora_sqrt_scale": Seam("peft.tuners.lora.layer.LoraLayer.update_layer", sqrt_scaling),
    # the saved checkpoint loses or spoils one file (spoil.py's SAVING_FAULTS): its checks fail, no error record
    **{kind: TRAINER for kind in SAVING_FAULTS},
    # merge_and_unload leaves one layer unmerged
    "route_merge": Seam("suite.train.routes.merge", lambda original: _merge_leaving_a_layer(original)),
    # load_adapter leaves the modules_to_save copies at the base's weights
    "route_modules_to_save": Seam("suite.train.routes.LoadAdapter.load",
                                  lambda original: _then(original, reset_saved_copies)),
    # the saved quantized base has one weight's block constants scaled
    "route_quantized_save": Seam("suite.train.routes.QuantizedBase.save",
                                 lambda original: _then(original, corrupt_quant_state)),
    # Gemma 3's sliding window ignored: its modeling module builds the plain causal mask for the sliding layers
    "window_ignored": Seam("transformers.models.gemma3.modeling_gemma3.create_sliding_window_causal_mask",
                           lambda original: _causal_mask_instead(original)),
    # inside Mixtral's load-balancing loss (suite/invariants/moe.py's by-definition relation): the router
    # probabilities softmaxed a second time, or the top-k taken as 1 whatever the config says
    "aux_softmax_twice": Seam("transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func",
                              lambda original: modeling_faults.balance_on_probabilities(original)),
    "aux_top_k_wrong": Seam("transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func",
                            lambda original: modeling_faults.balance_top_one(original)),
    # the router records its probabilities where its logits belong (the routing itself unchanged)
    "router_probabilities": Seam("transformers.models.mixtral.modeling_mixtral.MixtralTopKRouter.forward",
                                 lambda original: modeling_faults.router_returns_probabilities(original)),
    # Llama's forward builds its mask without the padding (pure causal): left-padded rows see the pads
    "padding_mask_ignored": Seam("transformers.models.llama.modeling_llama.create_causal_mask",
                                 lambda original: modeling_faults.mask_without_padding(original)),
    # a 4-bit base quantized in fewer places than declared (the MoE check's test)
    "quant_skip": Seam("suite.train.quantize.Bnb4Bit.load_kwargs", lambda original: _skip_quantizing(original)),
}
KINDS = tuple(SEAMS)


def requested() -> dict[str, float]:
    """kind -> fraction from FTSUITE_INJECT; a bad value is an error naming it."""
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in os.environ.get(ENV, "").split(","))):
        kind, _, value = item.partition(":")
        if kind not in KINDS:
            raise ValueError(f"{ENV}: unknown fault {kind!r}; known: {', '.join(KINDS)}")
        out[kind] = float(value) if value else 1.0
    return out


class Faults:
    """The timing and memory faults, as a trainer callback (duck-typed, as the online recorder is: importing
    this module imports no transformers, so that the parent can list the kinds cheaply)."""

    def __init__(self, faults: dict[str, float]):
        self.faults = faults
        self.held: bytearray | None = None
        self._wall = 0.0

    def __getattr__(self, name: str) -> Any:  # transformers calls every on_* hook a callback has
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_step_begin(self, args, state, control, **kwargs):
        self._wall = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        wall = time.perf_counter() - self._wall
        if "wait" in self.faults:
            time.sleep(self.faults["wait"] * wall)
        if "memory" in self.faults and state.global_step >= args.max_steps and self.held is None:
            from suite.train.measure import current_rss_bytes, peak_rss_bytes

            peak = peak_rss_bytes()
            self.held = bytearray(b"\x01") * max(int((1 + self.faults["memory"]) * peak) - current_rss_bytes(), 0)


EXTRA = 64  # the side of the square matrices the compute fault multiplies


def install(trainer, faults: dict[str, float] | None = None) -> dict[str, float]:
    """Add the requested trainer faults (`faults`, else FTSUITE_INJECT's) to a built trainer; returns them
    (empty: nothing injected)."""
    faults = requested() if faults is None else faults
    faults = {k: v for k, v in faults.items() if SEAMS[k] is TRAINER}
    if not faults:
        return {}
    trainer.add_callback(Faults(faults))
    _correctness_faults(trainer, faults)
    for declared in dict.fromkeys(DECLARED[kind] for kind in faults if kind in DECLARED):  # the trainers' own
        declared.install(trainer, {k: v for k, v in faults.items() if k in declared.kinds})
    MECHANICS_FAULTS.install(trainer, {k: v for k, v in faults.items() if k in MECHANICS_FAULTS.kinds})
    if "forward" in faults:
        original_loss = trainer.compute_loss

        def compute_loss(model, inputs, *args, **kwargs):
            import torch

            with torch.no_grad():
                model(**{k: v for k, v in inputs.items() if k != "labels"})
            return original_loss(model, inputs, *args, **kwargs)

        trainer.compute_loss = compute_loss
    if "compute" in faults:
        original_step = trainer.training_step
        products: list[int] = []

        def training_step(*args, **kwargs):
            import torch

            if not products:  # the first step, counted, sizes the extra work of every later one
                from torch.utils.flop_counter import FlopCounterMode

                counter = FlopCounterMode(display=False)
                with counter:
                    out = original_step(*args, **kwargs)
                products.append(max(1, round(faults["compute"] * counter.get_total_flops() / (2 * EXTRA**3))))
                return out
            a = torch.full((EXTRA, EXTRA), 1.0 / EXTRA)
            for _ in range(products[0]):
                a = torch.mm(a, a) + 1.0 / EXTRA
            return original_step(*args, **kwargs)

        trainer.training_step = training_step
    return faults


def _correctness_faults(trainer, faults: dict[str, float]) -> None:
    import torch

    model = trainer.model
    peft = hasattr(model, "get_base_model")
    with torch.no_grad():
        if "adapter_init" in faults:
            if peft:
                for name, param in model.named_parameters():
                    if "lora_B" in name:
                        param.fill_(0.01)
            else:
                model.get_input_embeddings().weight.add_(0.05)
    if "dropout_off" in faults or "dropout_in_eval" in faults:
        _dropout_faults(model, faults)
    if "no_update" in faults:
        creating = trainer.create_optimizer

        def create_optimizer(*args, **kwargs):
            optimizer = creating(*args, **kwargs)
            for group in optimizer.param_groups:  # the scheduler takes its base rates from these
                group["lr"] = 0.0
            return optimizer

        trainer.create_optimizer = create_optimizer
    if "aux_twice" in faults:  # trl's SFTTrainer adds router_aux_loss_coef x aux_loss once per step
        trainer.router_aux_loss_coef *= 2
    if "aux_dropped" in faults:
        trainer.aux_loss_enabled = False
    if "drop_expert_lora" in faults:
        after_save(trainer, lambda saved: drop_tensors(saved, ".experts."))
    if "drop_lora_b" in faults:
        after_save(trainer, drop_lora_b)
    if "route_raises" in faults:
        after_save(trainer, lambda saved: integration_wants_newer_peft())
    if "pad_labelled" in faults:  # the collator labels its padding with the pad id instead of -100
        trainer.data_collator = modeling_faults.labelling_padding(trainer.data_collator)
    for kind in (k for k in SAVING_FAULTS if k in faults):
        after_save(trainer, SAVING_FAULTS[kind])
    if "save_base" in faults:
        def save_base(saved) -> None:
            from safetensors.torch import save_file

            base = model.get_base_model() if peft else model
            tensors = {k: v.detach().contiguous().clone() for k, v in base.state_dict().items() if v.is_floating_point()}
            save_file(tensors, f"{saved}/model.safetensors")

        after_save(trainer, save_base)


def _dropout_faults(model, faults: dict[str, float]) -> None:
    import torch

    for name, module in model.named_modules():
        if ".lora_dropout." not in f".{name}." or not isinstance(module, torch.nn.Dropout):
            continue
        if "dropout_off" in faults:
            module.p = 0.0
        if "dropout_in_eval" in faults:
            module.forward = lambda x, m=module: torch.nn.functional.dropout(x, m.p, training=True)


def integration_wants_newer_peft() -> None:
    """transformers' PEFT integration's minimum peft raised to the next minor release after the installed one:
    its own check_peft_version then refuses the installed peft wherever the integration calls it."""
    from importlib.metadata import version

    from transformers.integrations import peft as integration

    major, minor = (int(x) for x in version("peft").split(".")[:2])
    integration.MIN_PEFT_VERSION = f"{major}.{minor + 1}.0"


def drop_lora_b(saved) -> None:
    """Save the wrong tensors: an adapter file without its lora_B matrices (peft reloads them as zeros)."""
    drop_tensors(saved, "lora_B")


def install_hooks(faults: dict[str, float] | None = None) -> dict[str, float]:
    """The one install hook, at a case child's start: wrap what each requested fault's seam names (no-op
    without FTSUITE_INJECT); returns the faults. The child is about to train one case and exits after, so
    nothing is unwrapped."""
    faults = requested() if faults is None else faults
    if not faults:
        return {}
    from suite.train.backends.registry import BACKENDS

    # every backend's instrument (the TRAINER seam) and describe (the record says which faults ran)
    for cls in {c for b in BACKENDS for c in type(b).__mro__ if "instrument" in vars(c) or "describe" in vars(c)}:
        if "instrument" in vars(cls):
            _wrap(cls, "instrument", lambda original: _instrument_after_faults(original, faults))
        if "describe" in vars(cls):
            _wrap(cls, "describe", lambda original: _describe_with_faults(original, faults))
    for seam in dict.fromkeys(SEAMS[kind] for kind in faults if SEAMS[kind] is not TRAINER):
        owner, name = seam_owner(seam.where)
        _wrap(owner, name, seam.wrap)
    return faults


def seam_owner(where: str) -> tuple[Any, str]:
    """The object holding the last name of a dotted path (a module, or a class in one), and that name."""
    import importlib

    parts = where.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for part in parts[i:-1]:
            owner = getattr(owner, part)
        return owner, parts[-1]
    raise ValueError(f"{where}: no module holds it")


def _wrap(owner: Any, name: str, wrapper: Callable[[Callable], Callable]) -> None:
    setattr(owner, name, wrapper(getattr(owner, name)))


def _then(original: Callable, spoil: Callable[[Any], None]) -> Callable:
    """A method that spoils what `original` returns (a loaded model, a saved folder) and returns it."""
    def method(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        spoil(out)
        return out

    return method


def _instrument_after_faults(original: Callable, faults: dict[str, float]) -> Callable:
    """The trainer's faults go in just before the backend instruments it, once per trainer (a subclass's
    instrument calling its parent's finds them there)."""
    def instrument(self, trainer):
        if getattr(trainer, "ftsuite_injected", None) is None:
            trainer.ftsuite_injected = install(trainer, faults)
        return original(self, trainer)

    return instrument


def _describe_with_faults(original: Callable, faults: dict[str, float]) -> Callable:
    """What the backend says of its trainer, and which faults the run had (the record's resolved.injected)."""
    def describe(self, trainer):
        return {**original(self, trainer), "injected": faults}

    return describe


def _causal_mask_instead(original: Callable) -> Callable:
    """The sliding-window mask builder replaced by the plain causal one (same arguments)."""
    from transformers.masking_utils import create_causal_mask

    return create_causal_mask


def _skip_quantizing(original: Callable) -> Callable:
    def load_kwargs(self, dtype):
        out = original(self, dtype)
        out["quantization_config"].llm_int8_skip_modules = ["o_proj", "lm_head"]
        return out

    return load_kwargs


def _merge_leaving_a_layer(original: Callable) -> Callable:
    def merge(model):
        from peft.tuners.lora import LoraLayer

        layer = next(m for m in model.modules() if isinstance(m, LoraLayer))
        layer.merge = lambda *a, **k: None  # this layer's update is lost in the merged weights
        return original(model)

    return merge


def reset_saved_copies(model: Any) -> None:
    """The route fault: modules_to_save copies put back to the base's weights after loading."""
    import torch

    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("modules_to_save.default") or name.endswith("modules_to_save"):
                original = dict(model.named_modules()).get(name.rsplit(".modules_to_save", 1)[0] + ".original_module")
                if original is not None:
                    module.load_state_dict(original.state_dict())


def corrupt_quant_state(folder: Path) -> None:
    """The route fault: one quantized weight's block constants saved scaled (a wrong serialization)."""
    from safetensors.torch import load_file, save_file

    path = next(folder.glob("*.safetensors"))
    tensors = load_file(str(path))
    key = next(k for k in sorted(tensors) if k.endswith(("absmax", "SCB")))
    tensors[key] = tensors[key] * 1.5
    save_file(tensors, str(path), metadata={"format": "pt"})
