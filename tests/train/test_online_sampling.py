"""What GRPO and RLOO really sampled with (suite/train/backends/online/sampling.py): on the tiny llama whose
generation_config.json asks for temperature 0.6, top_k 7, top_p 0.85 and min_p 0.05, a clean run's generate
resolves trl's config values (temperature 1, top_k 0, top_p 1) and the model file's min_p, which trl leaves None,
and passes `sampling_as_documented`; under `sampling_from_model_file` (trl's values dropped, so the model's file
supplies them) that check fails naming each field, and it alone fails. Real runs, judged without baselines."""
from __future__ import annotations

import pytest

from suite.train.backends.online.sampling import FIELDS, SamplingAsDocumented, documented_settings
from tests.helpers import assert_fails_alone, check_outcomes, fault_runs, failed_messages

MODELS = "models:\n  tiny-llama-sampling: {size: tiny, arch: llama_sampling}\n"
# 8 steps (the least a loss window of 2 and the benchmark's warm-up allow): what is checked is each generation's
# settings, not the reward's rise
MATRIX = ("matrix:\n  - {models: [tiny-llama-sampling], trainers: [%s], methods: [lora], datasets: [prompt_only], "
          "training: {max_steps: 8, batch_size: 16, learning_rate: 5.0e-3}, checks: {loss_window: 2}}\n")
FAULT = "sampling_from_model_file"
MODEL_FILE = {"do_sample": True, "temperature": 0.6, "top_k": 7, "top_p": 0.85, "min_p": 0.05,
              "repetition_penalty": None, "max_new_tokens": None}
TRL = {"do_sample": True, "max_new_tokens": 8, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": None,
       "repetition_penalty": 1.0}


@pytest.fixture(scope="module", params=("grpo", "rloo"))
def records(request, tmp_path_factory) -> dict:
    return fault_runs(tmp_path_factory.mktemp(request.param), MATRIX % request.param, ("", FAULT), MODELS)


@pytest.mark.slow
def test_a_clean_run_samples_with_trls_settings_and_the_files_min_p(records):
    rec = records["clean"]
    assert rec.status == "passed", failed_messages(rec)
    assert check_outcomes(rec)["sampling_as_documented"]
    observed = rec.resolved["sampling"]["observed"]
    assert observed["model_file"] == MODEL_FILE  # the variant's generation_config.json, as loaded
    assert observed["generate_calls"] >= 8
    assert [{f: s[f] for f in FIELDS} for s in observed["settings"]] == [{**TRL, "min_p": 0.05}]


@pytest.mark.slow
def test_sampling_from_the_models_file_fails_the_check_alone(records):
    rec = records[FAULT]
    untouched = tuple(n for n in check_outcomes(rec) if n != "sampling_as_documented")
    assert_fails_alone(rec, FAULT, "sampling_as_documented", untouched)
    message = next(c["message"] for c in rec.checks if c["name"] == "sampling_as_documented")
    for field in ("temperature: generate used 0.6", "top_k: generate used 7", "top_p: generate used 0.85"):
        assert field in message, message


def observed(resolved: dict, **fields) -> dict:
    return {"generate_calls": 3, "settings": [{**resolved, "calls": 3}], "passed": None, "model_file": MODEL_FILE,
            "trl_config": TRL, "generation_kwargs": {}, "error": None, **fields}


def test_the_precedence_config_then_file_then_defaults():
    expected = documented_settings(TRL, {}, MODEL_FILE)
    assert expected["temperature"] == (1.0, "the trainer's config")
    assert expected["min_p"] == (0.05, "the model's generation_config.json")
    assert documented_settings(TRL, {}, {f: None for f in FIELDS})["min_p"] == (None, "transformers' default")
    assert documented_settings(TRL, {"top_k": 3}, MODEL_FILE)["top_k"] == (3, "the trainer's generation_kwargs")


def test_the_check_on_crafted_observations():
    good = {**TRL, "min_p": 0.05}
    assert SamplingAsDocumented().evaluate("c", observed(good)).passed
    bad = SamplingAsDocumented().evaluate("c", observed({**good, "temperature": 0.6}))
    assert not bad.passed and "temperature: generate used 0.6, the trainer's config gives 1.0" in bad.message
    no_min_p = SamplingAsDocumented().evaluate("c", observed({**good, "min_p": None}))
    assert not no_min_p.passed and "min_p" in no_min_p.message
    for missing in (None, observed(good, settings=[]), observed(good, error="AttributeError: x")):
        result = SamplingAsDocumented().evaluate("c", missing)
        assert not result.passed and "not recorded" in result.message
