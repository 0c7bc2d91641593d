"""7B-shaped models: random weights from an architecture's config, for GPU machines without weights."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite import machine
from suite.errors import CaseError
from suite.cases import load_cases
from suite.paths import ROOT
from suite.records.results import read_record
from suite.run import requirements
from suite.run.session import RunSession
from suite.train import models
from tests.helpers import write_cases

CONFIGS = ROOT / "cases" / "configs"

# The published parameter counts of the three models (their model cards and safetensors index):
# a config field wrong by one (a head count, the vocabulary, a tied head) changes them.
PUBLISHED = {"llama2-7b": 6_738_415_616, "mistral-7b": 7_241_732_096, "qwen2.5-7b": 7_615_616_512}

# The llama2-7b config shrunk to train in seconds on a CPU; everything else is the file's.
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 4, "vocab_size": 512}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shipped_configs_have_the_published_parameter_counts(name):
    assert models.random_param_count(CONFIGS / f"{name}.json") == PUBLISHED[name]


def test_shaped_models_are_gpu_cases_that_skip_with_the_reason_on_a_cpu():
    cases = {c.id: c for c in load_cases("cases")}
    shaped = [c for c in cases.values() if c.model.config and c.model.size == "7b"]  # large: test_large_rows.py
    assert {c.model.name for c in shaped} == {"llama2-7b-shaped", "mistral-7b-shaped", "qwen2.5-7b-shaped",
                                               "olmoe-1b-7b-shaped"}
    case = cases["llama2-7b-shaped/qlora/gradient_checkpointing"]
    moe = cases["olmoe-1b-7b-shaped/qlora/gradient_checkpointing"]
    assert {"7b", "large", "gpu", "llama", "qlora"} <= set(case.markers)
    assert {"7b", "large", "gpu", "olmoe", "moe", "qlora"} <= set(moe.markers)
    if machine.cuda_available():
        pytest.skip("a CUDA GPU is visible: the CPU skip reason does not apply")
    for c in (case, moe):
        missing = requirements.missing_requirements(c)
        assert missing[0] == "a CUDA GPU (for a 7B model); none is visible here"
        assert not any("not found" in m for m in missing)  # no weights are needed


def test_the_olmoe_config_has_olmoe_1b_7bs_size():
    """OLMoE-1B-7B's model card: 6.9B parameters in all (64 experts of 8 per token, 16 layers)."""
    n = models.random_param_count(CONFIGS / "olmoe-1b-7b.json")
    assert 6.85e9 < n < 6.95e9, n


def _small_config(directory: Path) -> Path:
    doc = json.loads((CONFIGS / "llama2-7b.json").read_text())
    doc.update(SMALL)
    path = directory / "small-llama.json"
    path.write_text(json.dumps(doc))
    return path


def test_materialise_writes_bf16_safetensors_that_from_pretrained_loads(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    config = _small_config(tmp_path)
    path = models.materialise_random(config, root=tmp_path / "cache")
    assert (path / models.RANDOM_MARKER).is_file() and (path / "model.safetensors").is_file()
    assert models.materialise_random(config, root=tmp_path / "cache") == path  # built once
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.dtype == torch.bfloat16 and model.config.model_type == "llama"
    assert model.config.vocab_size == 512 and model.config.num_key_value_heads == 4
    tok = models.load_tokenizer(path)  # the word-level tokenizer, not an architecture's own
    assert tok("count from one ?")["input_ids"] == models.build_tokenizer()("count from one ?")["input_ids"]
    assert (model.config.pad_token_id, model.config.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    # another config is another directory: the cache is keyed by content, not by file name
    doc = json.loads(config.read_text())
    doc["intermediate_size"] = 192
    config.write_text(json.dumps(doc))
    assert models.materialise_random(config, root=tmp_path / "cache") != path


def test_too_little_disk_is_a_skip_reason_naming_the_room_needed(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 * 2**30, 10 * 2**30 - 2**30, 2**30))
    with pytest.raises(models.ModelNotAvailable, match=r"12\.9 GiB free disk for random weights of llama2-7b\.json"):
        models._check_random_room(CONFIGS / "llama2-7b.json", root=tmp_path)


@pytest.mark.parametrize("model, field, message", [
    ("{size: 7b, config: nope.json}", "models.m.config", "cannot read"),
    ("{size: 7b, config: bad.json}", "models.m.config", "is not JSON"),
    ("{size: 7b, config: notype.json}", "models.m.config", "has no model_type"),
    ("{size: 7b, arch: qwen2, config: ok.json}", "models.m.config", "describes a 'llama' model, not arch 'qwen2'"),
    ("{size: 7b, config: ok.json, hub_id: a/b}", "models.m.config", "take no hub_id"),
    ("{size: tiny, arch: llama, config: ok.json}", "models.m.config", "tiny models are built"),
    ("{size: 7b, config: 3}", "models.m.config", "must be a string"),
])
def test_bad_model_configs_name_the_file_and_field(tmp_path, model, field, message):
    d = write_cases(tmp_path / "c", "matrix:\n  - {models: [m], methods: [lora]}\n", models=f"models:\n  m: {model}\n")
    (d / "bad.json").write_text("{not json")
    (d / "notype.json").write_text('{"hidden_size": 8}')
    (d / "ok.json").write_text('{"model_type": "llama"}')
    with pytest.raises(CaseError) as err:
        load_cases(d)
    assert "models.yaml" in str(err.value) and field in str(err.value) and message in str(err.value)


def test_the_config_content_is_fingerprinted_not_its_path(tmp_path):
    def case_from(directory: Path, hidden: int):
        d = write_cases(directory, "matrix:\n  - {models: [m], methods: [lora]}\n",
                        models="models:\n  m: {size: 7b, config: shape.json}\n")
        (d / "shape.json").write_text(json.dumps({"model_type": "llama", "hidden_size": hidden}))
        return load_cases(d)[0]

    a, b, c = case_from(tmp_path / "a", 64), case_from(tmp_path / "b", 64), case_from(tmp_path / "c", 128)
    assert a.model.config != b.model.config and a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert a.to_dict()["model"]["config_sha256"] == a.model.config_sha256


@pytest.mark.slow
def test_a_shaped_case_trains_end_to_end_through_the_suite(tmp_path, monkeypatch):
    """The whole path a 7B-shaped GPU case takes, on a shrunk config: build, load, train, check, record."""
    config = _small_config(tmp_path)
    d = write_cases(tmp_path / "cases", f"""
        matrix:
          - models: [shaped]
            methods: [lora]
            training: {{max_steps: 30, max_length: 64, turns: 1, learning_rate: 1.0e-2}}
            checks: {{loss_window: 5, loss_margin: 0.1, logits_atol: 1.0e-4}}
        """, models=f"models:\n  shaped: {{size: 7b, config: {config}}}\n")
    case = load_cases(d)[0]
    assert case.id == "shaped/lora/base"
    # the GPU requirement is what this test steps over: everything after it is the real path
    monkeypatch.setattr(requirements, "missing_requirements", lambda c: [])
    result = RunSession(tmp_path / "results", "shaped", timeout_s=600, baselines=None).run_case(case)
    assert result.status == "passed", result.reason
    record = read_record(result.record_path)
    assert record.resolved["model_source"] == "random-config"
    assert record.resolved["model_path"].split("/")[-1].startswith("small-llama-")
    assert {c["name"] for c in record.checks} >= {"loss_decreases", "adapter_only", "checkpoint_size"}


def test_an_empty_cache_variable_means_the_default_cache(monkeypatch, tmp_path):
    """An unset CI variable arrives as an empty string: it must not put the cache in the working directory."""
    monkeypatch.setenv("FTSUITE_CACHE", "")
    assert models.cache_root() == Path.home() / ".cache" / "ftsuite"
    monkeypatch.setenv("FTSUITE_CACHE", str(tmp_path))
    assert models.cache_root() == tmp_path
