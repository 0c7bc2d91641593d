"""Model sources: tiny models built offline, and the real loading code on local directories."""
from __future__ import annotations

import json
import shutil

import pytest

from suite.train import data, models


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return models.materialise_tiny("llama", root=tmp_path_factory.mktemp("cache"))


def test_tokenizer_covers_the_data_and_renders_chat_with_assistant_mask():
    tok = models.build_tokenizer()
    for fmt in ("text", "prompt_completion"):
        for row in data.generate(fmt, 50):
            text = row.get("text") or row["prompt"] + row["completion"]
            assert tok.unk_token_id not in tok(text)["input_ids"], text
    msgs = data.generate("messages", 1)[0]["messages"]
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(tok.convert_ids_to_tokens(out["input_ids"]), out["assistant_masks"]) if m]
    assert masked[-1] == "<|end|>"  # the end-of-turn token is trained, so the model learns to stop
    assert "<|user|>" not in masked


def test_every_format_is_generated_deterministically():
    for fmt in data.FORMATS:
        assert data.generate(fmt, 5, seed=1) == data.generate(fmt, 5, seed=1)
    with pytest.raises(ValueError, match="unknown dataset format"):
        data.generate("csv", 1)


ORIGINAL_ARCHS = ("llama", "qwen2", "mistral", "mixtral")


# the original four in the fast loop; the families (about 1 s each to build) with the slow tests
@pytest.mark.parametrize("arch", [a if a in ORIGINAL_ARCHS else pytest.param(a, marks=pytest.mark.slow)
                                  for a in models.TINY_ARCHS])
def test_tiny_models_materialise_and_load_through_from_pretrained(tmp_path, arch):
    from transformers import AutoModelForCausalLM

    from suite.train.chat import STYLES

    path = models.materialise_tiny(arch, root=tmp_path)
    assert (path / models.TINY_MARKER).is_file() and (path / "model.safetensors").is_file()
    assert models.materialise_tiny(arch, root=tmp_path) == path  # built once
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = models.load_tokenizer(path)
    assert model.config.model_type == models.TINY_ARCHS[arch]["model_type"]
    # transformers 5 would swap qwen2's saved word-level tokenizer for a BPE one via AutoTokenizer
    built = models.build_tokenizer(STYLES.get(arch))
    assert tok("what colour is the cat ?")["input_ids"] == built("what colour is the cat ?")["input_ids"]
    assert tok.chat_template == built.chat_template  # the family's own template travels with the model
    logits = model(**tok(["count from one ?"], return_tensors="pt")).logits
    assert logits.shape[-1] == len(tok)


def test_each_transformers_major_gets_its_own_directory_with_the_same_weights(tmp_path, monkeypatch):
    """A directory written by transformers 5 breaks 4.56's tokenizer loader (upgrade-check across
    the major version errored on every case); within a major the directory is shared. The real
    4.56 run is tests/tools/test_upgrade.py::test_an_upgrade_check_across_the_transformers_major."""
    version = {"transformers": "5.23.0"}
    monkeypatch.setattr(models, "package_version", lambda name: version.get(name))
    five = models.materialise_tiny("llama", root=tmp_path)
    version["transformers"] = "5.22.2"
    assert models.materialise_tiny("llama", root=tmp_path) == five
    version["transformers"] = "4.56.2"
    four = models.materialise_tiny("llama", root=tmp_path)
    assert four != five and json.loads((four / models.TINY_MARKER).read_text())["format"] == "transformers-4"


def test_resolve_through_env_variable_loads_a_local_directory(tiny_dir, tmp_path, monkeypatch):
    """The hub-id/local-path code path of 7B models, exercised on a directory saved by the test."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import create_model_from_path

    local = tmp_path / "weights"
    shutil.copytree(tiny_dir, local)
    (local / models.TINY_MARKER).unlink()  # looks like any downloaded model now
    monkeypatch.setenv("FTSUITE_TEST_MODEL", str(local))
    res = models.resolve("7b", hub_id="org/some-7b", env="FTSUITE_TEST_MODEL")
    assert res.source == "env" and res.path == str(local)
    assert AutoModelForCausalLM.from_pretrained(res.path).config.model_type == "llama"
    assert create_model_from_path(res.path, device_map=None).config.model_type == "llama"  # trl's loader
    assert models.resolve("7b", path=str(local)).source == "path"


def test_resolve_through_the_hf_cache_layout(tiny_dir, tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--org--cached-7b"
    snap = repo / "snapshots" / "abc123"
    shutil.copytree(tiny_dir, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("FTSUITE_TEST_MODEL", raising=False)
    res = models.resolve("7b", hub_id="org/cached-7b", env="FTSUITE_TEST_MODEL")
    assert res.source == "hf-cache" and res.path == str(snap)


def test_missing_weights_say_which_variable_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("FTSUITE_TEST_MODEL", raising=False)
    with pytest.raises(models.ModelNotAvailable, match="set FTSUITE_TEST_MODEL to a local directory"):
        models.resolve("7b", hub_id="org/absent-7b", env="FTSUITE_TEST_MODEL")
    monkeypatch.setenv("FTSUITE_TEST_MODEL", str(tmp_path))
    with pytest.raises(models.ModelNotAvailable, match=r"\$FTSUITE_TEST_MODEL points at .* no config.json"):
        models.resolve("7b", hub_id="org/absent-7b", env="FTSUITE_TEST_MODEL")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(models.ModelNotAvailable, match="holds no weights"):
        models.resolve("7b", hub_id="org/absent-7b", env="FTSUITE_TEST_MODEL")
    with pytest.raises(models.ModelNotAvailable, match="not a directory"):
        models.resolve("7b", path=str(tmp_path / "nope"))
