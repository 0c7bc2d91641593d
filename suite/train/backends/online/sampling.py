"""What GRPO and RLOO really sampled with, and the check that it is what trl documents.

trl (1.16: grpo_trainer.py and rloo_trainer.py, where they build `self.generation_config`) builds its own
GenerationConfig from the trainer's config: do_sample True, max_new_tokens = max_completion_length, and the
config's temperature, top_p, top_k, min_p and repetition_penalty, then `generation_kwargs` on top ("keyword
arguments ... passed to GenerationConfig", GRPOConfig's docs); it hands that to `generate`, and (transformers
before 5) also overrides the model's own generation_config for the call (`unwrap_model_for_generation`'s
`generation_kwargs`, transformers#42762). transformers then fills what the passed config leaves None from the
model's generation_config.json, then from its global defaults (`generate`'s documented priority: the passed
config or kwargs > the model's generation config > the defaults). So the trainer's fields win, except where
trl passes None: of the seven recorded here that is min_p (trl's default None), which the model's file still
supplies.

The child (observe.py's `GenerateObserver`) wraps the policy's `generate` and records the settings it resolved for each
training generation (transformers' own resolution, as the call uses it); the judge
(`sampling_as_documented`) computes the expected settings by that precedence, with the suite's own function
and constants (FORBIDDEN_ORACLES: never transformers' resolution it observes with), and names each field that
differs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suite.checkresult import CheckResult
from suite.train.backends.base import TrainerCheck
from suite.train.backends.online.observe import FIELDS

if TYPE_CHECKING:
    from suite.checkresult import Bounds
    from suite.matrix.spec import Case
    from suite.train.payload import Payload

# transformers' documented defaults of GenerationConfig (its docstring), what a field neither trl nor the model's
# file sets resolves to; written out here, never read from transformers (the value judged comes from there)
TRANSFORMERS_DEFAULTS = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None,
                         "repetition_penalty": 1.0, "max_new_tokens": None}

# relation -> the library functions it must not call to compute what it expects (tests/judge/test_oracles.py)
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "sampling_as_documented": (
        "transformers.GenerationConfig", "transformers.generation.GenerationConfig",
        "transformers.generation.configuration_utils.GenerationConfig",
        "transformers.generation.utils.GenerationMixin._prepare_generation_config",
        "transformers.generation.utils.GenerationMixin.generate"),
}


def documented_settings(trl_config: dict, generation_kwargs: dict, model_file: dict) -> dict[str, tuple[Any, str]]:
    """Per field, the value trl's documented precedence gives and where it comes from: generation_kwargs, else the
    trainer's config (where trl passes a value), else the model's generation_config.json, else transformers'
    default."""
    out = {}
    for f in FIELDS:
        if f in generation_kwargs:
            out[f] = (generation_kwargs[f], "the trainer's generation_kwargs")
        elif trl_config.get(f) is not None:
            out[f] = (trl_config[f], "the trainer's config")
        elif model_file.get(f) is not None:
            out[f] = (model_file[f], "the model's generation_config.json")
        else:
            out[f] = (TRANSFORMERS_DEFAULTS[f], "transformers' default")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


@dataclass(frozen=True)
class SamplingAsDocumented:
    """Every training generation resolved the settings trl documents (documented_settings): the field that
    differs is named, with the value generate used and where the expected one comes from."""

    name: str = "sampling_as_documented"

    def evaluate(self, case_id: str, observed: dict | None) -> CheckResult:
        if not observed or observed.get("error") or not observed.get("settings"):
            why = (observed or {}).get("error") or "no training generation observed"
            return CheckResult(self.name, False, f"{case_id}: the sampling settings generate used were not "
                                                 f"recorded (resolved.sampling.observed): {why}")
        expected = documented_settings(observed["trl_config"], observed["generation_kwargs"], observed["model_file"])
        wrong = []
        for s in observed["settings"]:
            wrong += [f"{f}: generate used {s[f]!r}, {src} gives {value!r}"
                      for f, (value, src) in expected.items() if not _same(s[f], value)]
        wrong = list(dict.fromkeys(wrong))
        from_file = [f for f, (_, src) in expected.items() if src.startswith("the model's")]
        if wrong:
            return CheckResult(self.name, False, f"{case_id}: sampling not as trl documents ("
                                                 f"{observed['generate_calls']} generations): " + "; ".join(wrong),
                               value=float(len(wrong)), bound=0.0)
        return CheckResult(self.name, True, f"{case_id}: all {observed['generate_calls']} training generations "
                                            f"sampled with {', '.join(f'{f}={v!r}' for f, (v, _) in expected.items())}"
                                            f" as trl documents (from the model's generation_config.json: "
                                            f"{', '.join(from_file) or 'none'})", value=0.0, bound=0.0)


def _sampling(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
    observed = ((payload.resolved or {}).get("sampling") or {}).get("observed")
    return SamplingAsDocumented().evaluate(case.id, observed)


SAMPLING_AS_DOCUMENTED = TrainerCheck("sampling_as_documented", _sampling)
