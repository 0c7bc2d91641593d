"""The families at full size (cases/large.yaml): published configs, their parameter counts, the size axis."""
from __future__ import annotations

import json

import pytest

from suite import machine
from suite.cases import load_cases
from suite.errors import CaseError
from suite.matrix.axes import FAMILY_MODEL_TYPE, SIZE
from suite.paths import ROOT
from suite.run import requirements
from suite.train import models
from tests.helpers import write_cases

CONFIGS = ROOT / "cases" / "configs"
DOCS = ROOT / "docs" / "gpu.md"

# Each shaped config's parameters counted on the meta device by its family's transformers class (transformers
# 5.23), and the published figure it is checked against (docs/gpu.md, "The families at full size", says where
# each comes from). A field copied wrong (a head count, the vocabulary, a tied head, an expert count) moves the
# count; the published figures of Qwen3.5-9B and Gemma 4 31B name the whole release, vision tower included.
COUNTED = {
    "llama3.1-8b": 8_030_261_248,     # published 8,030,261,248 (Meta's model card: 8.03B)
    "qwen3-8b": 8_190_735_360,        # published 8.2B
    "qwen3-30b-a3b": 30_532_122_624,  # published 30.5B in all, 3.3B activated
    "qwen3.5-9b": 8_953_803_264,      # published 9B with the vision tower (this is the language model)
    "gemma3-12b": 11_766_034_176,     # keras-hub's text-only 12B: 11,765,788,416 with a 262,144 vocabulary
    "gemma4-31b": 30_697_345_280,     # published 31B with the vision tower (this is the language model)
    "phi4-mini": 3_836_021_760,       # published 3.8B
    "gpt-oss-20b": 20_914_757_184,    # published 20.9B in all, 3.6B active
    "smollm3-3b": 3_075_098_624,      # published 3B (3.08B)
}
# The published figures in billions, to the precision each source gives (the counts above round to them).
PUBLISHED_B = {"llama3.1-8b": 8.03, "qwen3-8b": 8.2, "qwen3-30b-a3b": 30.5, "qwen3.5-9b": 9.0, "gemma3-12b": 11.77,
               "gemma4-31b": 31.0, "phi4-mini": 3.8, "gpt-oss-20b": 20.9, "smollm3-3b": 3.08}
# the two counted without their vision tower: a few hundred million parameters below the release's figure
WITHOUT_VISION = {"qwen3.5-9b", "gemma4-31b"}


@pytest.mark.slow  # the first imports the families' modeling classes: 4-20 s, too long for the fast loop
@pytest.mark.parametrize("name", sorted(COUNTED))
def test_each_shaped_config_builds_on_meta_to_its_documented_count(name):
    assert models.random_param_count(CONFIGS / f"{name}.json") == COUNTED[name]


@pytest.mark.parametrize("name", sorted(COUNTED))
def test_each_count_is_the_published_one(name):
    billions = COUNTED[name] / 1e9
    if name in WITHOUT_VISION:
        assert PUBLISHED_B[name] - 0.6 < billions < PUBLISHED_B[name], billions
    else:
        assert round(billions, len(str(PUBLISHED_B[name]).split(".")[1])) == PUBLISHED_B[name], billions


def test_each_config_says_where_it_came_from():
    for name in COUNTED:
        source = json.loads((CONFIGS / f"{name}.json").read_text())["_source"]
        assert "config.json" in source and "github" in source.lower(), name


@pytest.mark.parametrize("field, value", [("num_key_value_heads", 4), ("tie_word_embeddings", False),
                                          ("vocab_size", 262144)])
def test_one_field_copied_wrong_moves_the_count(tmp_path, field, value):
    doc = json.loads((CONFIGS / "gemma3-12b.json").read_text())
    assert doc.get(field, True) != value
    doc[field] = value
    (tmp_path / "wrong.json").write_text(json.dumps(doc))
    assert models.random_param_count(tmp_path / "wrong.json") != COUNTED["gemma3-12b"]


def test_the_family_model_types_are_those_of_the_tiny_models():
    assert set(FAMILY_MODEL_TYPE) == set(models.TINY_ARCHS)
    for arch, model_type in FAMILY_MODEL_TYPE.items():
        assert models.TINY_ARCHS[arch]["model_type"] == model_type, arch


def large_cases() -> list:
    return [c for c in load_cases("cases") if c.model.size == "large"]


def test_every_family_has_lora_and_qlora_rows_real_and_shaped():
    cases = large_cases()
    families = {a for a in FAMILY_MODEL_TYPE if a not in ("llama", "qwen2", "mistral", "mixtral", "llama_sampling")}
    for arch in families:
        for shaped in (False, True):
            methods = {c.method for c in cases if c.model.arch == arch and bool(c.model.config) == shaped}
            assert {"lora", "qlora"} <= methods, (arch, shaped)
    assert all("gradient_checkpointing" in c.features for c in cases)
    assert all("eager" in c.features for c in cases if c.model.arch == "gpt_oss")
    assert all(c.lora.target_parameters for c in cases if c.is_moe)


def test_large_rows_carry_their_family_size_and_gpu_markers_not_7b():
    case = next(c for c in large_cases() if c.id == "gemma3-12b-shaped/qlora/gradient_checkpointing")
    assert {"large", "gemma3", "gpu", "qlora"} <= set(case.markers) and "7b" not in case.markers
    moe = next(c for c in large_cases() if c.id == "gpt-oss-20b-shaped/lora/gradient_checkpointing+eager")
    assert {"large", "gpt_oss", "moe", "eager"} <= set(moe.markers)
    assert SIZE["large"].gpu_for and not SIZE["large"].built


@pytest.mark.slow  # 36 skip reasons, the shaped ones counting their model on meta for the disk room: ~3 s under load
def test_large_rows_skip_on_a_cpu_naming_the_gpu_and_the_weights():
    if machine.cuda_available():
        pytest.skip("a CUDA GPU is visible: the CPU skip reason does not apply")
    for case in large_cases():
        missing = requirements.missing_requirements(case)
        assert missing[0].startswith("a CUDA GPU (for a full-size model"), (case.id, missing)
        if case.model.config is None:  # real weights: where to put them
            assert any("not found" in m and f"set {case.model.env}" in m for m in missing), (case.id, missing)
        else:  # random weights: built here, no weights needed
            assert not any("not found" in m for m in missing), (case.id, missing)


def test_a_config_whose_model_type_is_not_its_familys_is_refused(tmp_path):
    d = write_cases(tmp_path / "c", "matrix:\n  - {models: [m], methods: [lora]}\n",
                    models="models:\n  m: {size: large, arch: gemma3, config: shape.json}\n")
    (d / "shape.json").write_text('{"model_type": "llama"}')
    with pytest.raises(CaseError, match=r"describes a 'llama' model, not arch 'gemma3'"):
        load_cases(d)
    (d / "shape.json").write_text('{"model_type": "gemma3_text"}')
    assert load_cases(d)[0].model.arch == "gemma3"


def test_the_docs_give_each_large_model_its_count():
    text = DOCS.read_text()
    for name, count in COUNTED.items():
        assert f"{name}" in text and f"{count:,}" in text, name


def test_a_config_the_installed_transformers_cannot_build_is_a_skip_reason_not_an_error(tmp_path):
    """On the floor release (transformers 4.56) Qwen3.5's and Gemma 4's shapes have no class: the skip names it."""
    (tmp_path / "future.json").write_text('{"model_type": "no_such_model_type", "hidden_size": 8}')
    with pytest.raises(models.ModelNotAvailable, match=r"has no class for future\.json's model_type 'no_such_model_type'"):
        models._check_random_room(tmp_path / "future.json", root=tmp_path)


@pytest.mark.slow  # builds the 9 models on meta: 25 s under load, most of it importing their classes
def test_each_rows_declared_unquantized_weights_are_what_a_4bit_load_leaves():
    """bitsandbytes quantizes nn.Linear only: the rest of a layer's weights of two or more dimensions stay as they
    were (Qwen3.5's conv1d, the experts and routers), and the `quantized_base` check holds a QLoRA row to
    exactly what it declares; counted on the meta device as suite/train/probes.py names them."""
    import re

    import torch
    from transformers import AutoModelForCausalLM

    declared = {c.model.config: set(c.checks.unquantized) for c in large_cases() if c.model.config}
    assert len(declared) == len(COUNTED)
    by_arch = {(c.model.arch, bool(c.model.config)): set(c.checks.unquantized) for c in large_cases()}
    assert all(by_arch[(arch, False)] == by_arch[(arch, True)] for arch, _ in by_arch)  # real rows as their twins
    for config, names in declared.items():
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(models.random_config(config))
        linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
        ends = {id(m.weight) for m in (model.get_input_embeddings(), model.get_output_embeddings())}
        left = {re.sub(r"^.*?layers\.\d+\.", "", n) for n, p in model.named_parameters()
                if p.ndim >= 2 and id(p) not in linear | ends}
        assert left == names, (config, left, names)
