"""4-bit storage: what bitsandbytes keeps per parameter, against the QLoRA paper's 4.127 bits."""
from __future__ import annotations

import json

import pytest

from suite.paths import ROOT
from suite.train import models, probes, quantize

pytestmark = pytest.mark.slow  # quantizes a model with bitsandbytes

CONFIGS = ROOT / "cases" / "configs"
# Llama-2-7b's config with layers of 1024 x 1024 and 1024 x 2048: every weight a whole number of
# 64 x 256 blocks, as every 7B weight is, so the accounting is the paper's, at a CPU's cost.
SMALL = {"hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 1, "num_attention_heads": 8,
         "num_key_value_heads": 2, "vocab_size": 512}
PAPER_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # 4.127: NF4 + 8-bit absmax per 64 + fp32 absmax per 256 absmax


def test_nf4_double_quant_stores_the_papers_bits_per_parameter(tmp_path):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed: no 4-bit weights to measure")
    import torch
    from transformers import AutoModelForCausalLM

    doc = json.loads((CONFIGS / "llama2-7b.json").read_text())
    doc.update(SMALL)
    (tmp_path / "shape.json").write_text(json.dumps(doc))
    path = models.materialise_random(tmp_path / "shape.json", root=tmp_path / "cache")
    model = AutoModelForCausalLM.from_pretrained(path, **quantize.Bnb4Bit().load_kwargs(torch.float32), dtype=torch.float32)
    q = probes.quantized_summary(model)
    linear = 1024 * 1024 * 2 + 1024 * 256 * 2 + 3 * 1024 * 2048
    assert q["params"] == linear  # q, o: 1024x1024; k, v: 256x1024 (2 kv heads); gate, up, down: 1024x2048
    assert q["bits_per_param"] == pytest.approx(PAPER_BITS, abs=1e-9), q
    assert q["unquantized"] == {}  # every nn.Linear of a dense model is quantized (embeddings and head apart)
    # the same model in bf16 has no quantized weights to count
    assert probes.quantized_summary(AutoModelForCausalLM.from_pretrained(path)) is None
