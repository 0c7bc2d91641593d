"""The generating trainers' known faults (suite/train/inject.py installs them under FTSUITE_INJECT only),
around trl's generation and its scoring, nothing of its loss: `replay_completions` (every step gets the
first step's completions again, as a generator that is never synced or a stale rollout buffer would hand
out), `stale_old_logps` (the old policy's log-probabilities handed to the loss are 0, not the sampling
policy's: the ratio is not 1 at the first step), `batch_baseline` (advantages are each reward less the whole
batch's mean reward, not its group's).

The by-definition relations' faults (relations.py), each a silent change of the kind trl releases shipped, set on
the built trainer and nothing of the config the record reports: `scale_rewards_ignored` (GRPO's advantages not
divided by the reward std though scale_rewards says "group"), `dapo_per_sequence` (the dapo loss normalised per
sequence, grpo's denominator), `clip_dropped` (the importance ratio left unclipped: epsilon low/high ignored, seen
where old log-probabilities differ from the current ones, num_iterations > 1), `truncated_counted` (truncated
completions kept in the loss's mask and its denominator though mask_truncated_completions is set),
`loo_self_baseline` (RLOO's baseline is the group's mean with the completion itself, not its others': the
leave-one-out advantage scaled by (n - 1) / n).

The options' faults (cases/grpo_options.yaml, rloo_options.yaml): `scale_rewards_ignored` under scale_rewards
"none" scales by the group's std (trl's default); `loss_type_ignored` (any declared GRPO loss type computed as trl's
default "dapo", a declared "dapo" as "grpo"), `reward_clip_ignored` (RLOO's rewards not clipped to
reward_clip_range), `normalize_ignored` (RLOO's advantages left unnormalised though normalize_advantages is set).
`num_iterations` has `clip_dropped` and `stale_old_logps`; `mask_truncated_completions` has `truncated_counted`.

`sampling_from_model_file` (sampling.py's check): trl's temperature, top_k and top_p dropped from the generation
config it passes, so generation falls back to the model's generation_config.json for them."""
from __future__ import annotations

from suite.train.backends.base import DeclaredFaults

DAPO, GRPO_PER_SEQUENCE = "dapo", "grpo"  # trl's loss_type values (not the trainer axis)


def online_faults(trainer, faults: dict[str, float]) -> None:
    """The generating trainers' faults: around trl's generation and its scoring, nothing of its loss."""
    import torch

    if "replay_completions" in faults:
        generating, first = trainer._generate_single_turn, []

        def replay_first(*args, **kwargs):  # sampling still runs (the random stream is the clean run's)
            sampled = generating(*args, **kwargs)  # (completion ids, log-probabilities, ...)
            first.extend([] if first else [sampled])
            return first[0]

        trainer._generate_single_turn = replay_first
    if "stale_old_logps" in faults or "batch_baseline" in faults:
        scoring = trainer._generate_and_score_completions

        def score(inputs):
            out = scoring(inputs)
            if "stale_old_logps" in faults:  # GRPO's per-token old log-probabilities, RLOO's per sequence
                key = "old_logps" if "old_logps" in out else "old_per_token_logps"
                out[key] = torch.zeros_like(out["completion_mask"] if key == "old_per_token_logps"
                                            else out["advantages"], dtype=torch.float32)
            if "batch_baseline" in faults:
                n = out["advantages"].shape[0]
                rewards = torch.tensor([sum(col[i] for col in (list(v)[-n:] for v in trainer._logs["rewards"].values()))
                                        for i in range(n)], dtype=out["advantages"].dtype)
                out["advantages"] = rewards - rewards.mean()
            return out

        trainer._generate_and_score_completions = score
    definition_faults(trainer, faults)


def definition_faults(trainer, faults: dict[str, float]) -> None:
    """The by-definition relations' faults: trl's own attributes changed after it was built (the config it
    reports untouched), or its loss / scoring wrapped."""
    if "scale_rewards_ignored" in faults:  # what is not asked for: no scaling, or trl's default where none is
        trainer.scale_rewards = "group" if trainer.scale_rewards == "none" else "none"
    if "reward_clip_ignored" in faults:
        trainer.reward_clip_range = None
    if "normalize_ignored" in faults:
        trainer.normalize_advantages = False
    if "clip_dropped" in faults:
        trainer.epsilon_low = trainer.epsilon_high = float("inf")
    if "truncated_counted" in faults:
        trainer.mask_truncated_completions = False
    if "dapo_per_sequence" in faults or "loss_type_ignored" in faults:
        computing = trainer._compute_loss
        every = "loss_type_ignored" in faults

        def per_sequence(model, inputs):
            declared = trainer.loss_type  # dapo's token sum over the generation batch -> per-sequence means
            trainer.loss_type = GRPO_PER_SEQUENCE if declared == DAPO else DAPO if every else declared
            try:
                return computing(model, inputs)
            finally:
                trainer.loss_type = declared

        trainer._compute_loss = per_sequence
    if "loo_self_baseline" in faults:
        scoring = trainer._generate_and_score_completions

        def self_baseline(inputs):
            out = scoring(inputs)
            n = trainer.num_generations
            out["advantages"] = out["advantages"] * (n - 1) / n  # r - mean(group) = (n - 1) / n x (r - mean(others))
            return out

        trainer._generate_and_score_completions = self_baseline
    if "sampling_from_model_file" in faults:
        sampling_from_model_file(trainer)


def sampling_from_model_file(trainer) -> None:
    """Generation falls back to the model's generation_config.json for temperature, top_k and top_p (trl's config
    values dropped from the GenerationConfig it passes, and from the override of the model's own): what a
    transformers that let the model's file win, or a trl that forgot to pass them, would sample with."""
    for field in ("temperature", "top_k", "top_p"):
        setattr(trainer.generation_config, field, None)
        if isinstance(getattr(trainer, "generation_kwargs", None), dict):
            trainer.generation_kwargs.pop(field, None)


ONLINE_FAULTS = DeclaredFaults(("replay_completions", "stale_old_logps", "batch_baseline", "scale_rewards_ignored",
                                "dapo_per_sequence", "clip_dropped", "truncated_counted", "loo_self_baseline",
                                "sampling_from_model_file", "loss_type_ignored", "reward_clip_ignored",
                                "normalize_ignored"),
                               online_faults)
