"""Side by side within a run: pairs found from the records, ratios from medians, published figures."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from suite.paths import TESTS
from suite.records import runs
from suite.report import html as report_html
from suite.report import markdown as report_md
from suite.report import sidebyside

FIXTURE = TESTS / "fixtures" / "runs" / "tiny-a" / "tiny-llama__lora__base.json"


def _record(model: str, method: str, features: list[str], status: str = "passed", repeat: int = 0,
            **metrics: float) -> dict:
    rec = copy.deepcopy(json.loads(FIXTURE.read_text()))
    rec["case"].update(model={**rec["case"]["model"], "name": model}, method=method, features=features)
    rec["case_id"] = rec["case"]["id"] = f"{model}/{method}/{'+'.join(features) or 'base'}"
    rec["status"], rec["repeat"] = status, repeat
    rec["metrics"] = {k: {"value": v, "unit": "", "better": "none"} for k, v in metrics.items()} if status != "skipped" else {}
    return rec


def _run(tmp_path: Path, records: list[dict]) -> runs.Run:
    for i, rec in enumerate(records):
        (tmp_path / f"r{i}.json").write_text(json.dumps(rec))
    return runs.load(tmp_path)


def test_unsloth_against_hf_qlora_uses_repeat_medians_and_the_published_row(tmp_path):
    gc = ["gradient_checkpointing"]
    run = _run(tmp_path, [
        _record("llama2-7b-shaped", "qlora", gc, tokens_per_s=1000.0, cuda_max_reserved_gib=10.0, mfu=0.2),
        _record("llama2-7b-shaped", "unsloth", gc, repeat=0, tokens_per_s=1800.0, cuda_max_reserved_gib=6.0, mfu=0.36),
        _record("llama2-7b-shaped", "unsloth", gc, repeat=1, tokens_per_s=2000.0, cuda_max_reserved_gib=6.0, mfu=0.4),
        _record("llama2-7b-shaped", "unsloth", gc, repeat=2, tokens_per_s=9000.0, cuda_max_reserved_gib=6.0, mfu=0.5),
    ])
    [row] = sidebyside.frame(run).to_dict("records")
    assert row["comparison"] == "unsloth vs HF qlora" and row["reference"] == "llama2-7b-shaped/qlora/gradient_checkpointing"
    assert row["speed_ratio"] == pytest.approx(2.0)  # median of 1800, 2000, 9000 over 1000
    assert row["memory_change"] == pytest.approx(-0.4) and row["memory_metric"] == "cuda_max_reserved_gib"
    assert (row["published_speed_ratio"], row["published_memory_change"]) == (1.87, -0.393)
    assert "Llama-2 7b" in row["published_source"]
    text = "\n".join(report_md.sidebyside_md(run))
    assert "| 2.00x | -40.0% (CUDA reserved) | 40.0% / 20.0% | 1.87x | -39.3% |" in text


def test_feature_pairs_and_what_does_not_pair(tmp_path):
    run = _run(tmp_path, [
        _record("tiny-llama", "lora", [], tokens_per_s=100.0, peak_rss_gib=1.0),
        _record("tiny-llama", "lora", ["packing", "neftune"], tokens_per_s=300.0, peak_rss_gib=1.5),
        _record("tiny-llama", "lora", ["neftune"], tokens_per_s=90.0, peak_rss_gib=1.0),
        _record("tiny-llama", "lora", ["flash_attn"], status="skipped"),
        _record("tiny-qwen2", "full", [], tokens_per_s=50.0, peak_rss_gib=2.0),  # no lora of qwen2: no pair
    ])
    df = sidebyside.frame(run)
    got = {(r.comparison, r.variant, r.reference) for r in df.itertuples()}
    assert got == {("+neftune", "tiny-llama/lora/neftune", "tiny-llama/lora/base"),
                   ("+packing", "tiny-llama/lora/packing+neftune", "tiny-llama/lora/neftune")}
    packing = df[df["comparison"] == "+packing"].iloc[0]
    assert packing["speed_ratio"] == pytest.approx(300 / 90) and packing["memory_change"] == pytest.approx(0.5)
    assert packing["published_source"] == "" and sidebyside.sources(df) == []


def test_no_pairs_no_section_and_html_escapes(tmp_path):
    (tmp_path / "a").mkdir()
    run = _run(tmp_path / "a", [_record("tiny-llama", "lora", [], tokens_per_s=1.0, peak_rss_gib=1.0)])
    assert report_md.sidebyside_md(run) == [] and report_html.sidebyside_html(run) == ""
    (tmp_path / "b").mkdir()
    run = _run(tmp_path / "b", [_record("m<x>", "lora", [], tokens_per_s=1.0, peak_rss_gib=1.0),
                                _record("m<x>", "lora", ["packing"], tokens_per_s=2.0, peak_rss_gib=1.0)])
    html = report_html.sidebyside_html(run)
    assert ('<code class="id" title="m&lt;x&gt;/lora/packing">m&lt;x&gt;/<wbr>lora/<wbr>packing</code>' in html
            and "m<x>" not in html)


def test_the_plain_trainer_pairs_with_its_sft_twin_and_dpo_with_nothing(tmp_path):
    plain = _record("tiny-llama", "lora", [], tokens_per_s=120.0, peak_rss_gib=1.1)
    plain["case"]["trainer"] = "hf_trainer"
    plain["case_id"] = "tiny-llama/hf_trainer/lora/base"
    dpo = _record("tiny-llama", "lora", [], tokens_per_s=60.0, peak_rss_gib=1.3)
    dpo["case"].update(trainer="dpo", dataset="preference")
    dpo["case_id"] = "tiny-llama/dpo/lora/base/preference"
    run = _run(tmp_path, [_record("tiny-llama", "lora", [], tokens_per_s=100.0, peak_rss_gib=1.0), plain, dpo])
    [row] = sidebyside.frame(run).to_dict("records")
    assert (row["comparison"], row["variant"], row["reference"]) == (
        "Trainer vs SFTTrainer lora", "tiny-llama/hf_trainer/lora/base", "tiny-llama/lora/base")
    assert row["speed_ratio"] == pytest.approx(1.2) and row["memory_change"] == pytest.approx(0.1)


def test_liger_pairs_with_its_hf_twin_and_carries_the_published_figure(tmp_path):
    gc = ["gradient_checkpointing"]
    run = _run(tmp_path, [
        _record("llama2-7b-shaped", "qlora", gc, tokens_per_s=1000.0, cuda_max_reserved_gib=10.0),
        _record("llama2-7b-shaped", "qlora", [*gc, "liger"], tokens_per_s=1100.0, cuda_max_reserved_gib=7.0),
        _record("tiny-llama", "lora", [], tokens_per_s=100.0, peak_rss_gib=1.0),
        _record("tiny-llama", "lora_8bit", [], tokens_per_s=80.0, peak_rss_gib=0.9),
    ])
    rows = {r["comparison"]: r for r in sidebyside.frame(run).to_dict("records")}
    liger = rows["+liger"]
    assert liger["speed_ratio"] == pytest.approx(1.1) and liger["memory_change"] == pytest.approx(-0.3)
    assert (liger["published_speed_ratio"], liger["published_memory_change"]) == (1.20, -0.60)
    assert "Liger Kernel Integration" in liger["published_source"]
    assert rows["lora_8bit vs lora"]["reference"] == "tiny-llama/lora/base"


def test_the_two_ways_of_carrying_added_tokens_pair_with_their_checkpoint_sizes(tmp_path):
    ways = []
    for feat, size in (("modules_to_save", 91136.0), ("trainable_tokens", 66048.0)):
        rec = _record("tiny-llama", "lora", [feat], tokens_per_s=100.0, peak_rss_gib=1.0, checkpoint_bytes=size)
        rec["case"].update(dataset="chatml", effective_loss="assistant_only")
        ways.append(rec)
    run = _run(tmp_path, ways)
    [row] = sidebyside.frame(run).to_dict("records")
    assert row["comparison"] == "trainable_tokens vs modules_to_save"
    assert row["checkpoint_change"] == pytest.approx(66048 / 91136 - 1)
    assert "| -27.5% |" in "\n".join(report_md.sidebyside_md(run))


SCHEMA_2 = TESTS / "fixtures" / "records" / "schema-2" / "tiny-llama__lora__base.json"


def test_the_routes_table_says_which_routes_each_method_went_through_and_why_not(tmp_path):
    rec = json.loads(SCHEMA_2.read_text())
    for name in ("ok", "bad", "md"):
        (tmp_path / name).mkdir()
    headers, rows, notes = sidebyside.routes_table(_run(tmp_path / "ok", [rec]))
    assert headers[:2] == ["trainer", "method"] and "auto_peft" in headers and "quantized_base" in headers
    cells = dict(zip(headers, rows[0]))
    assert (cells["trainer"], cells["method"], cells["auto_peft"], cells["full_model"]) == ("sft", "lora", "1/1 passed",
                                                                                             "n/a")
    assert any(n.startswith("full_model: ") and "(sft lora)" in n for n in notes)
    broken = copy.deepcopy(rec)  # the route's check failed in the record: the table says so
    next(c for c in broken["checks"] if c["name"] == "reload/auto_peft")["passed"] = False
    cells = dict(zip(headers, sidebyside.routes_table(_run(tmp_path / "bad", [broken]))[1][0]))
    assert cells["auto_peft"] == "0/1 passed"
    assert "Load routes per method" in "\n".join(report_md.routes_md(_run(tmp_path / "md", [rec])))
