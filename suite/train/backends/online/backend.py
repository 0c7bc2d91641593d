"""What the generating trainers (trl's GRPOTrainer and RLOOTrainer) share: prompt-only data, a reward
computed in code, the model given as a path (trl loads it and, with a KL coefficient above 0, its reference:
a second copy for a full fine-tune, the disabled adapter for LoRA), and a recorder of what each step sampled.

The reward is the fraction of a completion's tokens that are colour words (8 of the tiny vocabulary's ~55
words, about 15% of a random model's samples): dense enough that a randomly initialised tiny model raises it
within 30-60 steps. The recorder wraps the trainer's `_generate_and_score_completions` (outermost, after any
known fault: what it records is what the loss saw) and writes per step, beside the logged loss, the
completions' token counts, rewards and advantages, and whether a replay of the step's sampling by the
current policy (the same prompts, generation config and random state, through trl's own
`unwrap_model_for_generation`) gives the same completions; trl's maths is not touched."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.matrix.axes import PROMPT_ONLY_FORMATS
from suite.train import args as train_args
from suite.train import compat, data, models
from suite.train.backends.base import NO_HOOKS, BuildHooks, TrainerCheck
from suite.train.backends.sft.backend import HFSFTTrainer
from suite.train.backends.online import checks as own_checks
from suite.train.backends.online import exercised
from suite.train.backends.online import metrics as own_metrics
from suite.train.backends.online.config import online_config, pinned
from suite.train.backends.online.faults import ONLINE_FAULTS
from suite.train.backends.online.definitions import completion_mask
from suite.train.backends.online.lossrecord import LossRecorder, config_of
from suite.train.backends.online.observe import GenerateObserver
from suite.train.rng import rng_state, set_rng

if TYPE_CHECKING:
    from suite.matrix.spec import Case

TARGET_WORDS = tuple(data.COLOURS)  # what the reward counts
SHOWN = 4  # completions the record shows (text, reward, advantage) at the first and the last step


def colour_reward(tokenizer: Any):
    """The reward function: per completion, the fraction of its tokens that are colour words."""
    target = set(tokenizer.convert_tokens_to_ids(list(TARGET_WORDS)))

    def colour_fraction(completions: list, completion_ids: list, **kwargs) -> list[float]:
        return [sum(i in target for i in ids) / max(len(ids), 1) for ids in completion_ids]

    return colour_fraction


class Online(HFSFTTrainer):
    """A generating trainer: subclasses name their trl trainer, config and defaults."""

    formats = PROMPT_ONLY_FORMATS
    features: tuple[str, ...] = ("by_name",)
    distributed = False
    # trl 1.x's GRPOConfig and RLOOConfig have no max_length (nor max_prompt_length): prompts go in whole and
    # what a step adds is capped by max_completion_length, which declared_fields pins
    max_length_cut = None
    loss_falls = False  # a policy-gradient surrogate near 0 (zero-mean advantages): the reward is what rises
    # An adapter trains the LM head beside the LoRA matrices (peft's modules_to_save; trl refuses a LoRA on the
    # LM head, whose weight it multiplies directly): on the tiny model (hidden 64, head weights of std 0.02,
    # a final RMSNorm) what LoRA alone can move the colour words' logits by is capped near 1.3 nats, and the
    # reward rose only 0.16 -> 0.25 in 60 steps even at a rate of 5e-2 (0.30-0.37 with the final norm
    # trained too); with the head it reached 1.0 within 18 steps at 1e-2 (measured, avx512-bf16)
    adapter_carries = ("lm_head",)
    defaults: dict = {}  # the trainer's config fields the suite pins (beside generation and sampling)
    metrics = own_metrics.METRICS
    logged_metrics = own_metrics.LOGGED_METRICS
    logged_keys = own_metrics.LOGGED_KEYS
    logged_lists = own_metrics.LOGGED_LISTS
    faults = (ONLINE_FAULTS,)
    options_exercised = exercised.options_check()  # RLOO's judges its own loss's (sequence) ratio

    def version_needs(self, case: Case) -> list[str]:
        return ["generating_trainers", "trl_loss_kernel", "trl_package_checks"]

    def config_value(self, case: Case, field: str) -> Any:
        """A config field as the case declares it: its extra, else the suite's default, else trl's."""
        import dataclasses

        declared = {**pinned(self.defaults), **dict(case.training.extra)}
        if field in declared:
            return declared[field]
        return next(f.default for f in dataclasses.fields(self.trl_config_cls()) if f.name == field)

    def machine_lacks(self, case: Case, cuda: bool) -> list[str]:
        """A quantized base on a CPU: trl casts a quantized model's trainable parameters to bf16 (the QLoRA paper's
        advice), the LM head this adapter trains among them, while a CPU run computes in fp32; the first
        generation then stops on a dtype mismatch in the LM head (measured on trl 1.16.0, 4-bit: RuntimeError
        "expected m1 and m2 to have the same dtype, but got: float != c10::BFloat16"). A CUDA run computes in
        bf16 (training.precision auto) and is not refused here; no such run has been measured yet."""
        if case.quantization.bits is not None and not cuda:
            return [f"a CUDA GPU (for {self.name} on a {case.quantization.bits}-bit base: trl casts the trainable LM "
                    f"head to bf16 while a CPU run computes in fp32, so generation fails on the dtype mismatch); none "
                    f"is visible here"]
        return []

    def checks_for(self, case: Case) -> tuple[TrainerCheck, ...]:
        """The KL check only where there is a KL term (beta above 0); the reward's rise unless the case says it is
        not what it is for (checks.reward_rises); options_exercised where the case sets an option it measures."""
        kept = tuple(c for c in self.checks
                     if (c is not own_checks.KL_STARTS_AT_ZERO or self.config_value(case, "beta") > 0)
                     and (c is not own_checks.REWARD_RISES or case.checks.reward_rises))
        declared = {**pinned(self.defaults), **dict(case.training.extra)}
        return kept + ((self.options_exercised,) if exercised.asks(declared) else ())

    def declared_fields(self, case: Case, common: dict) -> dict:
        return {**common, **pinned(self.defaults), **dict(case.training.extra)}

    def peft_config(self, case: Case, hooks: BuildHooks) -> Any:
        if hooks.peft_config is not None:
            return hooks.peft_config
        return train_args.lora_config(case, modules_to_save=["lm_head"]) if case.is_adapter else None

    def trl_trainer(self) -> type:
        raise NotImplementedError

    def trl_config_cls(self) -> type:
        raise NotImplementedError

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None,
                      hooks: BuildHooks = NO_HOOKS) -> tuple[Any, Any, dict]:
        tokenizer = hooks.tokenizer if hooks.tokenizer is not None else models.load_tokenizer(model_path)
        load_kwargs = self.reload_kwargs(case, device, dtype)
        init_kwargs, trainer_kwargs = compat.quantization_args(load_kwargs)
        args = online_config(case, output_dir, device, precision, init_kwargs, self.trl_config_cls(), self.defaults)
        trainer = (hooks.trainer_cls or self.trl_trainer())(
            model=model_path, reward_funcs=colour_reward(tokenizer), args=args, train_dataset=dataset,
            eval_dataset=eval_dataset, **self.given_tokenizer(case, tokenizer),
            peft_config=self.peft_config(case, hooks), callbacks=callbacks, **trainer_kwargs, **hooks.trainer_kwargs)
        return trainer, self.tokenizer_of(case, trainer, tokenizer), load_kwargs

    def instrument(self, trainer: Any) -> Any:
        """The sample recorder, wrapped around the generation (after any known fault) and called back
        first at each log; it counts each step's tokens too."""
        from suite.train.measure import MeasureCallback

        recorder, callbacks = SampleRecorder(trainer), trainer.callback_handler.callbacks
        # after trl's printer, before the suite's measurement: the lists go to the record, not the console
        callbacks.insert(next((i for i, c in enumerate(callbacks) if isinstance(c, MeasureCallback)), 0), recorder)
        return recorder

    def describe(self, trainer: Any) -> dict:
        """What was sampled: the sampling settings, the reward, and a few completions of the first and last step."""
        args = trainer.args
        recorder = next(c for c in trainer.callback_handler.callbacks if isinstance(c, SampleRecorder))
        return {"sampling": {
            "num_generations": args.num_generations, "max_completion_length": args.max_completion_length,
            "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "beta": args.beta,
            "loss_type": getattr(args, "loss_type", None), "seed": args.seed,
            "generation_batch_size": args.generation_batch_size, "steps_per_generation": args.steps_per_generation,
            "reward": f"fraction of completion tokens that are colour words ({', '.join(TARGET_WORDS)})",
            "replayed": "each step's sampling replayed by the policy of that step (same prompts, generation "
                        "config and random state): sampled/on_policy is the share of completions it reproduced",
            "first_step": recorder.shown.get("first"), "last_step": recorder.shown.get("last"),
            "config": config_of(trainer), "loss_records": recorder.loss.records,
            # what generate resolved (not the arguments above): the sampling_as_documented check's input
            "observed": recorder.observer.record(args)}}



def eos_ids(generation_config: Any) -> list[int]:
    """The tokens that end a completion, as the generation config that sampled it says (trl 1.16 keeps a list of
    them as `eos_token_ids`, earlier releases one `eos_token_id`; both put what they stop on in the config)."""
    ids = generation_config.eos_token_id
    return [] if ids is None else [ids] if isinstance(ids, int) else list(ids)


class SampleRecorder:
    """Records each generation's completions (token counts, rewards, advantages, a replay by the current
    policy) and hands them to the step's log; counts its tokens per step (a CountingCollator's per_step)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.inner = trainer._generate_and_score_completions
        trainer._generate_and_score_completions = self._generate_and_score
        self.pending: dict | None = None
        self.batches: list[tuple[int, int, int]] = []
        self.shown: dict[str, dict] = {}
        self.loss = LossRecorder(trainer, eos_ids(trainer.generation_config))  # after any fault on compute_loss
        self.observer = GenerateObserver(trainer)  # trl's generate calls only: not the replay's, not an evaluation's

    def _generate_and_score(self, inputs: Any) -> dict:
        before = rng_state()
        self.observer.active = self.trainer.model.training
        try:
            out = self.inner(inputs)
        finally:
            self.observer.active = False
        if self.trainer.model.training:  # not an evaluation's
            self._record(out, before)
        return out

    def _record(self, out: dict, before: tuple) -> None:
        t = self.trainer
        mask, prompt_mask = out["completion_mask"], out["prompt_mask"]
        lengths = [int(x) for x in mask.sum(1).tolist()]
        n = len(lengths)
        rewards = [sum(col[i] for col in (list(v)[-n:] for v in t._logs["rewards"].values()))
                   for i in range(n)]  # one reward function, weight 1: its value
        advantages = [float(a) for a in out["advantages"].reshape(n, -1)[:, 0].tolist()]
        self.batches.append((int(prompt_mask.sum() + mask.sum()), int(mask.sum()), n))
        self.pending = {"sampled/lengths": lengths, "sampled/rewards": rewards, "sampled/advantages": advantages,
                        "sampled/on_policy": self._replayed(out, before)}
        # the suite's own forward (the old and reference log-probabilities), in training only: not in the profiled
        # step after it, whose counted work the budgets hold (it counts the step's sampling and replay, as before)
        kl = self.loss.generated(out) if t.state.global_step < t.args.max_steps else None
        if kl is not None:
            self.pending["sampled/kl"] = kl
        shown = {"step": t.state.global_step + 1, "prompts": list(t._logs["prompt"])[-n:][:SHOWN],
                 "completions": list(t._logs["completion"])[-n:][:SHOWN], "rewards": rewards[:SHOWN],
                 "advantages": advantages[:SHOWN], "mean_reward": sum(rewards) / n}
        self.shown.setdefault("first", shown)
        if shown["step"] <= t.args.max_steps:  # not the profiled step after training
            self.shown["last"] = shown

    def _replayed(self, out: dict, before: tuple) -> float:
        """The share of this step's completions that the current policy, sampling again from the same
        random state with trl's generation config, reproduces token for token (1.0 on policy)."""
        import torch
        from trl.models.utils import unwrap_model_for_generation

        t, after = self.trainer, rng_state()
        set_rng(before)
        try:
            passed = compat.added_kwargs(  # trl before 0.26.2 neither keeps generation_kwargs nor takes them
                "unwrap_model_for_generation", generation_kwargs=getattr(t, "generation_kwargs", None),
                gradient_checkpointing_kwargs=t.args.gradient_checkpointing_kwargs)
            with unwrap_model_for_generation(t.model_wrapped, t.accelerator, **passed) as model, torch.no_grad():
                ids = model.generate(input_ids=out["prompt_ids"], attention_mask=out["prompt_mask"],
                                     generation_config=t.generation_config)
        finally:
            set_rng(after)
        again = ids[:, out["prompt_ids"].size(1):]
        eos = torch.isin(again, torch.tensor(eos_ids(t.generation_config), device=again.device))
        first_eos = torch.where(eos.any(1), eos.int().argmax(1), torch.full_like(eos[:, 0], again.size(1),
                                                                                  dtype=torch.long))
        same = 0
        # each completion's own length (to its first EOS): trl's mask holds none of a truncated one under
        # mask_truncated_completions, which a replay must still reproduce
        lengths = [sum(completion_mask(row, self.loss.eos, None, False)) for row in out["completion_ids"].tolist()]
        for i, length in enumerate(lengths):
            mine = min(int(first_eos[i]) + 1, again.size(1))
            same += mine == length and torch.equal(again[i, :length], out["completion_ids"][i, :length])
        return same / again.size(0)

    # TrainerCallback's hooks (duck-typed: transformers calls what a callback defines)
    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs and self.pending is not None:
            logs.update(self.pending)
            self.pending = None

    def per_step(self, steps: int, grad_accum: int) -> list[tuple[int, int, int]]:
        """Processed (prompt and completion), labelled (completion) tokens and sequences per optimizer step:
        one generation per step (trl's steps_per_generation is the accumulation steps by default)."""
        return self.batches[:steps]
