"""The generating trainers' known faults (suite/train/inject.py installs them under FTSUITE_INJECT only),
around trl's generation and its scoring, nothing of its loss: `replay_completions` (every step gets the
first step's completions again, as a generator that is never synced or a stale rollout buffer would hand
out), `stale_old_logps` (the old policy's log-probabilities handed to the loss are 0, not the sampling
policy's: the ratio is not 1 at the first step), `batch_baseline` (advantages are each reward less the whole
batch's mean reward, not its group's)."""
from __future__ import annotations

from suite.train.backends.base import DeclaredFaults


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


ONLINE_FAULTS = DeclaredFaults(("replay_completions", "stale_old_logps", "batch_baseline"), online_faults)
