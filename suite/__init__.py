"""ftsuite: a regression and benchmark suite for the LLM fine-tuning stack."""
from __future__ import annotations

__version__ = "0.1.0"
