"""What KTOTrainer logs beside the loss (the implicit rewards, chosen: desirable, rejected: undesirable, and
its KL estimate), the keys the measurement records, and the metrics the judge derives from them."""
from __future__ import annotations

from suite.metric import Metric

LOGGED_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "kl")
LOGGED_METRICS = {"kto_reward_margin_final": "rewards/margins", "kto_kl_final": "kl"}
METRICS = (
    Metric("kto_reward_margin_final", "nats", "higher", "KTO: mean desirable-minus-undesirable reward of the last "
           "k logged steps", 0.10),
    Metric("kto_kl_final", "nats", "none", "KTO: trl's KL estimate (policy vs reference on mismatched "
           "completions), mean of the last k logged steps", 0.10),
)
