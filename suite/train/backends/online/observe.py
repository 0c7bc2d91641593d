"""The child's side of `sampling_as_documented` (sampling.py): the settings each training generation of GRPO or
RLOO resolved, observed at the policy's own `generate` (transformers' resolution of what it was passed, as
`generate` does first), beside the model's generation_config.json and trl's config fields."""
from __future__ import annotations

from typing import Any

FIELDS = ("do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "max_new_tokens")


def _values(config: Any) -> dict:
    return {f: getattr(config, f, None) for f in FIELDS}


class GenerateObserver:
    """Wraps the policy's (the PEFT base's, for an adapter) `generate`: while `active`, records the settings the
    call resolved (transformers' `_prepare_generation_config` on what it was given, as generate itself does
    first), the distinct ones with how many calls used each."""

    def __init__(self, trainer: Any) -> None:
        model = trainer.accelerator.unwrap_model(trainer.model)
        self.model = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.model_file = _values(self.model.generation_config)  # as loaded from its generation_config.json
        self.active, self.calls = False, 0
        self.settings: list[dict] = []  # distinct resolved settings, each with its "calls"
        self.passed: dict | None = None
        self.error: str | None = None
        inner = self.model.generate

        def generate(*args, **kwargs):
            if self.active:
                self._observe(kwargs)
            return inner(*args, **kwargs)

        self.model.generate = generate

    def _observe(self, kwargs: dict) -> None:
        given = kwargs.get("generation_config")
        rest = {k: v for k, v in kwargs.items() if k in FIELDS}
        try:
            resolved, _ = self.model._prepare_generation_config(given, **rest)
        except Exception as exc:  # a release whose private resolution differs: recorded, and the check says so
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.calls += 1
        if self.passed is None:
            self.passed = {**(_values(given) if given is not None else {}), **rest}
        seen = _values(resolved)
        for s in self.settings:
            if {f: s[f] for f in FIELDS} == seen:
                s["calls"] += 1
                return
        self.settings.append({**seen, "calls": 1})

    def record(self, args: Any) -> dict:
        """`resolved.sampling.observed`: what generate resolved, what it was passed, the model's file, trl's config."""
        trl = {"do_sample": True, "max_new_tokens": args.max_completion_length,
               **{f: getattr(args, f, None) for f in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")}}
        return {"generate_calls": self.calls, "settings": self.settings, "passed": self.passed,
                "model_file": self.model_file, "trl_config": trl,
                "generation_kwargs": dict(getattr(args, "generation_kwargs", None) or {}), "error": self.error}
