"""What RewardTrainer logs beside the loss (its pairwise accuracy and margin), the keys the measurement
records, and the metrics the judge derives from them."""
from __future__ import annotations

from suite.metric import Metric

LOGGED_KEYS = ("accuracy", "margin")
LOGGED_METRICS = {"pairwise_accuracy_final": "accuracy", "pairwise_margin_final": "margin"}
METRICS = (
    Metric("pairwise_accuracy_final", "fraction", "higher", "reward model: share of pairs whose chosen completion "
           "scores higher, mean of the last k logged steps", 0.10),
    Metric("pairwise_margin_final", "logit", "higher", "reward model: mean chosen-minus-rejected score, last k "
           "logged steps", 0.10),
)
