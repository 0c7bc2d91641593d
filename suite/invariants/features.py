"""Invariants of training features: packing (padding-free) and NEFTune."""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable, Iterator

from suite.invariants import harness as h
from suite.invariants.labels import require_position_ids
from suite.invariants.losses import per_example_losses
from suite.invariants.relations import RELATIONS, NotApplicable, Verdict, compare
from suite.matrix.axes import DEFAULT_ATTENTION

# The library functions each relation here must not call to compute what it expects (issue 36: a relation
# that calls the function it judges cannot see a change inside it); tests/judge/test_oracles.py scans the
# module for them. An empty tuple: the relation compares two real runs, or the trainer's output with the
# case's own settings, and computes no expected value a library function could supply.
_NEFTUNE = ("transformers.integrations.neftune.neftune_post_forward_hook",
            "transformers.trainer_utils.neftune_post_forward_hook")
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "packing.per_example_loss": ("transformers.loss.loss_utils.ForCausalLMLoss", "trl.data_utils.pack_dataset"),
    "packing.no_cross_attention": ("trl.data_utils.pack_dataset",),
    "packing.run_loss": (),
    "packing.run_weights": (),
    "gpt_oss.packing.per_example_loss": ("transformers.loss.loss_utils.ForCausalLMLoss", "trl.data_utils.pack_dataset"),
    "gpt_oss.packing.no_cross_attention": ("trl.data_utils.pack_dataset",),
    "gpt_oss.packing.run_loss": (),
    "gpt_oss.packing.run_weights": (),
    "qwen3_5.position_ids_alone.packing.per_example_loss": ("transformers.loss.loss_utils.ForCausalLMLoss",
                                                            "trl.data_utils.pack_dataset"),
    "qwen3_5.position_ids_alone.packing.no_cross_attention": ("trl.data_utils.pack_dataset",),
    "neftune.on_in_training": _NEFTUNE,
    "neftune.off_after_train": _NEFTUNE,
}

# transformers' NEFTune forward hook on the input embeddings is a function whose name holds this
NEFTUNE_HOOK = "neftune"

PACK_ROWS = 6  # examples that all fit one packed sequence of PACK_LENGTH tokens
PACK_LENGTH = 256


# what transformers raises where a family's kernels are missing and its torch fallback cannot keep packed
# sequences apart (integrations/hub_kernels.py: Qwen3.5's gated-DeltaNet layers on a CPU)
REFUSED_PACKING = "can't keep packed sequences apart"


def family_relation(name: str, arch: str, variant: str = "") -> str:
    """The relation `name` as measured on `arch` (by way of `variant`, a collator wrapper's name): the family's own
    where relations.py declares one (a relation known broken upstream on that family alone, as gpt-oss's packed
    masks), else `name` itself."""
    own = ".".join(x for x in (arch, variant, name) if x)
    return own if own in RELATIONS else name


@contextlib.contextmanager
def refused_packing(arch: str) -> Iterator[None]:
    """transformers refusing packed sequences a family's installed kernels cannot separate is no verdict on the
    relation: not applicable, saying what transformers asks for."""
    try:
        yield
    except ValueError as exc:
        if REFUSED_PACKING not in str(exc):
            raise
        raise NotApplicable(f"{arch}: transformers refuses trl's packed batches here: {exc}") from None


def _segments(position_ids) -> list[tuple[int, int]]:
    """(start, end) of each sequence in a padding-free row, from where position_ids restart at 0."""
    pos = position_ids[0].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
    return list(zip(starts[:-1], starts[1:]))


def _model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "labels"}


def _packed_forward_probe(model, batch: dict, break_positions: bool, arch: str = "llama", variant: str = ""
                          ) -> list[Verdict]:
    """Per-example loss packed vs alone, and logits of each example with the others scrambled."""
    import torch

    from suite.invariants.harness import plain_logits

    require_position_ids(batch, "packed examples")
    inputs = _model_inputs(continuous_positions(lambda b: b)(batch) if break_positions else batch)
    packed = plain_logits(model, inputs)
    segs = _segments(batch["position_ids"])
    alone, inside, leak = [], [], 0.0
    for k, (s, e) in enumerate(segs):
        ids, labels = batch["input_ids"][:, s:e], batch["labels"][:, s:e]  # start masked: never a target
        solo = plain_logits(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        alone += per_example_losses(solo, labels)
        inside += per_example_losses(packed[:, s:e], labels)
        scrambled = dict(inputs, input_ids=inputs["input_ids"].clone())
        gen = torch.Generator().manual_seed(k)
        for j, (s2, e2) in enumerate(segs):
            if j != k:
                scrambled["input_ids"][:, s2:e2] = torch.randint(4, model.config.vocab_size, (1, e2 - s2), generator=gen)
        other = plain_logits(model, scrambled)
        leak = max(leak, float((other[:, s:e] - packed[:, s:e]).abs().max()))
    what = f"{len(segs)} examples in one packed row, attention {model.config._attn_implementation}, {arch}"
    return [compare(family_relation("packing.per_example_loss", arch, variant), inside, alone, what),
            RELATIONS[family_relation("packing.no_cross_attention", arch, variant)].measure(leak, what)]


def measure_packing_forward(out: Path, attention: str = "sdpa", *, break_positions: bool = False,
                            arch: str = "llama", collator_wrapper: Callable | None = None) -> list[Verdict]:
    """One packed (padding-free) batch from trl's own collator, forwarded packed and example by example, on the
    tiny model of `arch` (an architecture whose class has no SDPA runs eager whatever `attention` says);
    `collator_wrapper` wraps trl's collator for the training steps and the batch measured."""
    features = ("packing",) + ((attention,) if attention != DEFAULT_ATTENTION else ())  # the attention feature
    case = h.tiny_case("lora", features=features, batch_size=1, num_samples=PACK_ROWS, max_length=PACK_LENGTH,
                       max_steps=2, arch=arch)
    built = h.build_trainer(case, out)
    if collator_wrapper is not None:
        built.trainer.data_collator = collator_wrapper(built.trainer.data_collator)
    with refused_packing(arch):
        built.trainer.train()  # trained a little, so attention is not near-uniform
    batch = h.first_batches(built.trainer)[0]
    variant = getattr(collator_wrapper, "__name__", "") if collator_wrapper is not None else ""
    return _packed_forward_probe(built.trainer.model, batch, break_positions, arch, variant)


def measure_packing_runs(out: Path, method: str = "lora", steps: int = 3,
                         collator_wrapper: Callable | None = None, arch: str = "llama") -> list[Verdict]:
    """A packed run (one packed row per step) against an unpacked run (one padded batch per step), on the tiny
    model of `arch`."""
    runs = []
    for packing in (True, False):
        case = h.tiny_case(method, features=("packing",) if packing else (), num_samples=PACK_ROWS,
                           batch_size=1 if packing else PACK_ROWS, max_length=PACK_LENGTH, max_steps=steps, arch=arch)
        built = h.build_trainer(case, out / ("packed" if packing else "padded"))
        n_rows = len(built.trainer.train_dataset)
        if packing and n_rows != 1:
            raise RuntimeError(f"expected the {PACK_ROWS} examples to pack into one row of {PACK_LENGTH}, got {n_rows}")
        if packing and collator_wrapper is not None:
            built.trainer.data_collator = collator_wrapper(built.trainer.data_collator)
        with refused_packing(arch):
            runs.append((h.train_and_log(built), h.trainable_state(built.trainer.model)))
    (loss_p, w_p), (loss_u, w_u) = runs
    what = f"{method}, {steps} steps, {PACK_ROWS} examples per step" + (f", {arch}" if arch != "llama" else "")
    return [compare(family_relation("packing.run_loss", arch), loss_p, loss_u, what),
            compare(family_relation("packing.run_weights", arch), w_p, w_u, what)]


def continuous_positions(collator):
    """A collator whose padding-free batches lost the per-sequence restarts of position_ids."""
    import torch

    def collate(examples):
        batch = dict(collator(examples))
        batch["position_ids"] = torch.arange(batch["input_ids"].shape[1])[None]
        for key in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx"):
            batch.pop(key, None)
        return batch

    return collate


def position_ids_alone(collator):
    """Padding-free batches with their position_ids and without the cu_seq_lens trl adds for varlen kernels (as a
    collator of one's own, or transformers' DataCollatorWithFlattening without them, would give)."""
    def collate(examples):
        batch = dict(collator(examples))
        for key in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx"):
            batch.pop(key, None)
        return batch

    return collate


# ------------------------------------------------------------------------------------------ NEFTune

class _NoiseProbe:
    """Records, at every training forward, how far the embedding output is from the plain lookup."""

    def __init__(self, alpha: float, drop_neftune: bool) -> None:
        self.alpha, self.drop_neftune = alpha, drop_neftune
        self.ratios: list[float] = []
        self._handle = None

    def callback(self):
        from transformers import TrainerCallback

        probe = self

        class _Cb(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                emb = model.get_input_embeddings()
                if probe.drop_neftune:  # the trainer forgot to switch NEFTune on
                    for key in [k for k, fn in emb._forward_hooks.items() if NEFTUNE_HOOK in fn.__name__]:
                        del emb._forward_hooks[key]
                probe._handle = emb.register_forward_hook(probe._record)  # runs after NEFTune's hook

            def on_train_end(self, args, state, control, **kwargs):
                probe._handle.remove()

        return _Cb()

    def _record(self, module, inputs, output) -> None:
        import torch

        if module.training:
            plain = torch.nn.functional.embedding(inputs[0], module.weight)
            expected = self.alpha / math.sqrt(output.size(1) * output.size(2))
            self.ratios.append(float((output - plain).abs().max()) / expected)


def measure_neftune(out: Path, *, alpha: float = 0.5, drop_neftune: bool = False,
                    after_train: Callable | None = None) -> list[Verdict]:
    """Noise on the embeddings while training, none once train() returns (in train mode too)."""
    import torch

    case = h.tiny_case("lora", features=("neftune",), neftune_alpha=alpha)
    probe = _NoiseProbe(alpha, drop_neftune)
    built = h.build_trainer(case, out, callbacks=(probe.callback(),))
    built.trainer.train()
    model = built.trainer.model
    if after_train is not None:
        after_train(built.trainer)
    ids = built.tokenizer(["what colour is the cat ? the cat is red ."], return_tensors="pt")["input_ids"]
    emb = model.get_input_embeddings()
    model.train()  # NEFTune's hook only acts in training mode: look there
    with torch.no_grad():
        emb_diff = float((emb(ids) - torch.nn.functional.embedding(ids, emb.weight)).abs().max())
        train_logits = model(input_ids=ids).logits
    eval_logits = h.plain_logits(model, {"input_ids": ids})
    logit_diff = float((train_logits - eval_logits).abs().max())
    on = RELATIONS["neftune.on_in_training"].measure(min(probe.ratios, default=0.0),
                                                     f"alpha {alpha}, {len(probe.ratios)} training forwards")
    off = RELATIONS["neftune.off_after_train"].measure(
        max(emb_diff, logit_diff), f"embeddings {emb_diff:.3g}, logits train vs eval mode {logit_diff:.3g}")
    return [on, off]


def leave_neftune_on(trainer) -> None:
    """Register NEFTune's hook again after train(), as a trainer that forgets to remove it would."""
    try:
        from transformers.integrations.neftune import activate_neftune
    except ImportError:  # transformers 4.x keeps NEFTune inside the Trainer: this fault cannot be planted
        raise NotApplicable("the installed transformers has no transformers.integrations.neftune.activate_neftune "
                            "to register the hook again with (it arrived with transformers 5)") from None

    activate_neftune(trainer.model, trainer.args.neftune_noise_alpha)
