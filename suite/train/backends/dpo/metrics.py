"""What DPOTrainer logs beside the loss (the implicit rewards: beta x log-ratio of policy to reference), the
keys the measurement records, and the metrics the judge derives from them."""
from __future__ import annotations

from suite.metric import Metric

LOGGED_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
LOGGED_METRICS = {"reward_margin_final": "rewards/margins", "reward_accuracy_final": "rewards/accuracies"}
METRICS = (
    Metric("reward_margin_final", "nats", "higher", "DPO: mean chosen-minus-rejected reward of the last k logged "
           "steps", 0.10),
    Metric("reward_accuracy_final", "fraction", "higher", "DPO: mean share of pairs whose chosen reward is higher, "
           "last k logged steps", 0.10),
)
