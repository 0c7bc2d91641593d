"""What GRPOTrainer and RLOOTrainer log per step (the mean reward of the samples, their spread, the policy's
entropy, the KL), what the suite's sample recorder adds (lists: backend.py's SampleRecorder), and the
metrics the judge derives from them."""
from __future__ import annotations

from suite.metric import Metric

LOGGED_KEYS = ("kl", "reward", "reward_std", "entropy")
LOGGED_LISTS = ("sampled/lengths", "sampled/rewards", "sampled/advantages", "sampled/on_policy", "sampled/kl")
LOGGED_METRICS = {"online_reward_final": "reward", "online_kl_final": "kl"}
METRICS = (
    Metric("online_reward_final", "reward", "higher", "GRPO/RLOO: mean reward of the sampled completions, last k "
           "logged steps", 0.10),
    Metric("online_kl_final", "nats", "none", "GRPO/RLOO: trl's KL estimate (policy vs reference on the sampled "
           "completions), mean of the last k logged steps", 0.10),
)
