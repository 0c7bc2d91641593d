"""What DistillationTrainer logs beside the loss (the student's mean token entropy), the keys the measurement
records, and the metrics the judge derives from them."""
from __future__ import annotations

from suite.metric import Metric

LOGGED_KEYS = ("entropy",)
LOGGED_METRICS = {"distill_entropy_final": "entropy"}
METRICS = (
    Metric("distill_entropy_final", "nats", "none", "Distillation: the student's mean token entropy on its own "
           "completions (trl's log), mean of the last k logged steps", 0.10),
)
