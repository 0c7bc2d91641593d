"""Every mapping of the compatibility layer, checked against the installed packages' real APIs."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

from suite.cases import load_cases
from suite.paths import ROOT
from suite.train.backends.registry import backend_for
from suite.train import compat
from suite.versions import package_version
from tests.helpers import write_cases


def sft_fields() -> set[str]:
    from trl import SFTConfig

    return {f.name for f in dataclasses.fields(SFTConfig)}


@pytest.mark.parametrize("name", sorted(compat.RENAMES))
def test_each_rename_picks_a_name_the_installed_version_accepts(name, tmp_path):
    rename = compat.RENAMES[name]
    chosen = rename.key()
    if rename.where == "SFTConfig":
        assert chosen in sft_fields(), f"{chosen} is not an SFTConfig field in trl {package_version('trl')}"
    elif rename.where == "SFTTrainer":
        from trl import SFTTrainer

        assert chosen in inspect.signature(SFTTrainer.__init__).parameters
    else:  # from_pretrained: really load a tiny model with the chosen keyword
        import torch
        from transformers import AutoModelForCausalLM

        from suite.train import models

        path = models.materialise_tiny("llama", root=tmp_path)
        model = AutoModelForCausalLM.from_pretrained(path, **{chosen: torch.bfloat16})
        assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("name", sorted(compat.MOVES))
def test_each_move_picks_the_place_the_installed_version_takes(name):
    move = compat.MOVES[name]
    assert move.new == "SFTTrainer" and move.old == "SFTConfig.model_init_kwargs"
    from trl import SFTTrainer

    takes = name in inspect.signature(SFTTrainer.__init__).parameters
    assert move.in_new_place() == takes, f"trl {package_version('trl')}: SFTTrainer takes {name}: {takes}"


def test_quantization_config_goes_where_trl_takes_it_and_nowhere_when_absent(monkeypatch):
    quant, load = object(), {"dtype": "bf16", "device_map": None}
    assert compat.quantization_args(load) == (load, {})  # no stray quantization_config=None for old trl
    init, trainer = compat.quantization_args({**load, "quantization_config": quant})
    assert (init, trainer) == (load, {"quantization_config": quant})  # installed trl >= 1.8
    monkeypatch.setattr(compat, "package_version", lambda name: "1.7.0")
    init, trainer = compat.quantization_args({**load, "quantization_config": quant})
    assert (init, trainer) == ({**load, "quantization_config": quant}, {})


def test_checkpointing_is_always_explicit_and_reaches_the_config():
    from trl import SFTConfig

    for enabled in (True, False):
        cfg = SFTConfig(output_dir="/tmp/x", use_cpu=True, bf16=False, report_to="none",
                        **compat.checkpointing_args(enabled))
        assert cfg.gradient_checkpointing is enabled  # trl's own default would be True


@pytest.mark.parametrize("name", sorted(compat.REQUIREMENTS))
def test_each_requirement_is_met_by_the_installed_versions(name):
    assert compat.REQUIREMENTS[name].missing() is None
    field = {"completion_only_loss": "completion_only_loss", "assistant_only_loss": "assistant_only_loss",
             "packing_bfd": "packing_strategy", "neftune": "neftune_noise_alpha"}.get(name)
    if field:
        assert field in sft_fields()


def test_an_older_version_renames_and_skips_with_the_version_named(monkeypatch, tmp_path):
    versions = {"trl": "0.19.1", "transformers": "4.55.0"}
    assert compat.RENAMES["checkpointing"].since == "5.23.0"  # 5.22.2 lacks activation_checkpointing
    monkeypatch.setattr(compat, "package_version", lambda name: versions.get(name, "99"))
    assert compat.max_length_args(64) == {"max_seq_length": 64}
    assert compat.checkpointing_args(True) == {"gradient_checkpointing": True}
    assert compat.dtype_kwarg("x") == {"torch_dtype": "x"}
    d = write_cases(tmp_path, "matrix:\n  - {models: [tiny-llama], methods: [lora], features: [packing], "
                              "datasets: ['messages:assistant_only']}\n")
    case = load_cases(d)[0]
    reasons = compat.cannot_express(case, backend_for(case).version_needs(case))
    assert "trl>=0.20.0 for assistant-only loss (SFTConfig.assistant_only_loss) (installed: 0.19.1)" in reasons
    assert any("packing with position ids" in r for r in reasons)


def test_generating_trainers_and_expert_lora_skip_on_older_releases_naming_them(monkeypatch, tmp_path):
    """GRPO/RLOO below trl 0.24 and LoRA on fused experts below peft 0.17 skip in the matrix, and an invariant
    building such a case is not applicable, saying the same (the floor stack, trl 0.20 and peft 0.15, is one)."""
    from suite.invariants import harness
    from suite.invariants.relations import NotApplicable

    cases_dir = ROOT / "cases"
    cases = {c.id: c for c in load_cases(cases_dir)}
    grpo, experts = cases["tiny-llama/grpo/lora/base/prompt_only"], cases["tiny-mixtral/lora/base"]
    assert compat.cannot_express(grpo, backend_for(grpo).version_needs(grpo)) == []
    assert compat.cannot_express(experts, backend_for(experts).version_needs(experts)) == []
    versions = {"trl": "0.23.1", "peft": "0.16.0", "transformers": "4.57.6"}  # peft 0.16 imports on transformers 4
    monkeypatch.setattr(compat, "package_version", lambda name: versions.get(name, "99"))
    [why] = compat.cannot_express(grpo, backend_for(grpo).version_needs(grpo))
    assert why.startswith("trl>=0.24.0 for GRPOTrainer and RLOOTrainer") and "(installed: 0.23.1)" in why
    why, fused = compat.cannot_express(experts, backend_for(experts).version_needs(experts))
    assert why.startswith("peft>=0.17.0 for LoRA on parameters such as fused experts") and "0.16.0" in why
    assert fused.startswith("transformers>=5.0.0 for a mixture of experts stored fused")  # 4.57.6: a list of experts
    with pytest.raises(NotApplicable, match=r"tiny-llama/grpo/lora/base/prompt_only needs trl>=0\.24\.0"):
        harness.build_trainer(grpo, tmp_path)


@pytest.mark.parametrize("key", sorted(compat.ADDED))
def test_each_added_keyword_is_taken_by_the_installed_function_exactly_when_declared(key):
    import importlib

    added = compat.ADDED[key]
    module, function = added.where.rsplit(".", 1)
    takes = added.name in inspect.signature(getattr(importlib.import_module(module), function)).parameters
    assert added.accepted() == takes, f"{added.package} {package_version(added.package)}: {added.where} takes " \
                                      f"{added.name}: {takes}"


def test_added_keywords_are_left_out_before_their_release(monkeypatch):
    """The sample recorder of GRPO and RLOO calls unwrap_model_for_generation as the installed trl does: trl 1.15
    has no gradient_checkpointing_kwargs, 0.26.1 no generation_kwargs (both errored there, the release sweep)."""
    call = dict(generation_kwargs={"top_k": 0}, gradient_checkpointing_kwargs=None, gather_deepspeed3_params=True)
    for trl, kept in (("1.16.0", set(call)), ("1.15.0", set(call) - {"gradient_checkpointing_kwargs"}),
                      ("0.26.2", set(call) - {"gradient_checkpointing_kwargs"}),
                      ("0.26.1", {"gather_deepspeed3_params"})):
        monkeypatch.setattr(compat, "package_version", lambda name, v=trl: v if name == "trl" else "99")
        assert set(compat.added_kwargs("unwrap_model_for_generation", **call)) == kept, trl


def test_trl_1_15_without_triton_skips_the_trainers_of_its_fused_lm_head(monkeypatch):
    """trl 1.15.0's SFT, DPO, KTO, GRPO and RLOO trainers need Triton (the release sweep saw all of them error on a
    CPU-only torch); its reward trainer and transformers' Trainer do not, nor trl 1.14 or 1.16, nor a machine with
    Triton."""
    cases = {c.id: c for c in load_cases(ROOT / "cases")}
    needs = ["tiny-llama/lora/base", "tiny-llama/dpo/lora/base/preference", "tiny-llama/kto/lora/base/unpaired_preference",
             "tiny-llama/grpo/lora/base/prompt_only", "tiny-llama/rloo/lora/base/prompt_only"]
    free = ["tiny-llama/reward/lora/base/preference", "tiny-llama/hf_trainer/lora/base"]
    triton = {"here": False}
    real_find_spec = compat.importlib.util.find_spec
    monkeypatch.setattr(compat.importlib.util, "find_spec",
                        lambda name: object() if name == "triton" and triton["here"] else real_find_spec(name))
    for trl, skips in (("1.15.0", True), ("1.14.2", False), ("1.16.0", False)):
        monkeypatch.setattr(compat, "package_version", lambda name, v=trl: v if name == "trl" else "99")
        for case_id in needs + free:
            case = cases[case_id]
            reasons = compat.cannot_express(case, backend_for(case).version_needs(case))
            expected = ([f"trl>=1.16.0 or the package triton (pip install triton) for the log-probabilities of trl "
                         f"1.15's fused LM head (its Triton kernel has no fallback) (installed: {trl}, without triton)"]
                        if skips and case_id in needs else [])
            assert reasons == expected, (trl, case_id)
    triton["here"] = True
    monkeypatch.setattr(compat, "package_version", lambda name: "1.15.0" if name == "trl" else "99")
    assert compat.REQUIREMENTS["trl_loss_kernel"].missing() is None


def test_the_8bit_optimizer_on_a_cpu_needs_bitsandbytes_0_50(monkeypatch):
    """Before 0.50.0 bitsandbytes' 8-bit optimizers had no CPU kernels (the release sweep: SFT and DPO with
    adamw_8bit errored on 0.46.1 and 0.49.2); on a GPU they had, so a CUDA machine is not refused."""
    from suite import machine
    from suite.run import requirements

    case = {c.id: c for c in load_cases(ROOT / "cases")}["tiny-llama/dpo/lora/adamw_8bit/preference"]
    cuda = {"here": False}
    monkeypatch.setattr(machine, "cuda_available", lambda: cuda["here"])
    for bnb, refused in (("0.49.2", True), ("0.50.0", False)):
        monkeypatch.setattr(compat, "package_version", lambda name, v=bnb: v if name == "bitsandbytes" else "99")
        expected = ["bitsandbytes>=0.50.0 for the 8-bit optimizer on a CPU (adamw_8bit) (installed: 0.49.2)"]
        assert requirements.missing_requirements(case) == (expected if refused else []), bnb
    cuda["here"] = True
    monkeypatch.setattr(compat, "package_version", lambda name: "0.49.2" if name == "bitsandbytes" else "99")
    assert "optimizer_8bit_cpu" in compat.REQUIREMENTS and not any(
        "8-bit optimizer" in m for m in requirements.missing_requirements(case))


@pytest.mark.parametrize("versions, reason", [
    # peft 0.16 and 0.17 do not import on transformers 5 (every case errored: the release sweep)
    ({"peft": "0.17.1", "transformers": "5.23.0"}, "peft>=0.18.0 (or peft<0.16, or transformers<5.0.0) for importing "
     "peft (0.16 and 0.17 import transformers.HybridCache, which transformers 5.0 removed) (installed: peft 0.17.1, "
     "transformers 5.23.0)"),
    ({"peft": "0.16.0", "transformers": "4.57.6"}, None),
    ({"peft": "0.15.0", "transformers": "5.23.0"}, None),
    ({"peft": "0.18.1", "transformers": "5.23.0"}, None),
])
def test_peft_releases_that_do_not_import_on_transformers_5_skip_every_case(monkeypatch, versions, reason):
    cases = {c.id: c for c in load_cases(ROOT / "cases")}
    monkeypatch.setattr(compat, "package_version", lambda name: versions.get(name, "99"))
    for case_id in ("tiny-llama/full/base", "tiny-llama/reward/lora/base/preference"):
        case = cases[case_id]
        assert compat.cannot_express(case, backend_for(case).version_needs(case)) == ([reason] if reason else [])


@pytest.mark.parametrize("peft, transformers, expected", [
    ("0.21.2", "5.0.0", "expert_lora_loading_info"),  # measured: TypeError ... unexpected keyword 'loading_info'
    ("0.21.2", "5.1.0", None),
    ("0.19.1", "5.23.0", "expert_lora_distributed_operation"),  # measured: ... 'distributed_operation'
    ("0.19.1", "5.5.4", None),
    ("0.20.0", "5.23.0", None),
    ("0.18.1", "5.0.0", None),  # no weight conversion in peft before 0.19
    ("0.18.1", "4.57.6", "fused_experts"),  # transformers 4 keeps a list of experts: the case's names match nothing
])
def test_lora_on_fused_experts_skips_where_peft_and_transformers_convert_differently(monkeypatch, peft, transformers,
                                                                                      expected):
    cases = {c.id: c for c in load_cases(ROOT / "cases")}
    versions = {"peft": peft, "transformers": transformers}
    monkeypatch.setattr(compat, "package_version", lambda name: versions.get(name, "99"))
    experts, dense = cases["tiny-mixtral/lora/base"], cases["tiny-llama/lora/base"]
    reasons = compat.cannot_express(experts, backend_for(experts).version_needs(experts))
    assert reasons == ([compat.REQUIREMENTS[expected].missing()] if expected else [])
    if isinstance(compat.REQUIREMENTS.get(expected), compat.Conflict):
        assert f"(installed: peft {peft}, transformers {transformers})" in reasons[0]
    assert compat.cannot_express(dense, backend_for(dense).version_needs(dense)) == []  # no fused experts, no skip


def test_token_counts_read_the_batch_layouts_of_older_trl_collators():
    """DPO's (until trl 0.28), KTO's (until 0.25) and the reward model's (until 0.23) collators keep the parts of a
    pair apart; the counts are those of the same tokens in today's layout, and an unknown layout is named."""
    import torch

    from suite.train.measure import batch_counts, legacy_counts

    def mask(*lengths: int, width: int = 6) -> torch.Tensor:
        return torch.tensor([[1] * n + [0] * (width - n) for n in lengths])

    prompt, chosen, rejected = mask(3, 2), mask(4, 1), mask(2, 2)
    old_dpo = {"prompt_input_ids": prompt, "prompt_attention_mask": prompt, "chosen_input_ids": chosen,
               "chosen_attention_mask": chosen, "rejected_input_ids": rejected, "rejected_attention_mask": rejected}
    # today's DPO: each completion after its prompt, the completions marked
    rows = [(3, 4), (2, 1), (3, 2), (2, 2)]
    new_dpo = {"input_ids": mask(*(p + c for p, c in rows), width=9), "attention_mask": mask(*(p + c for p, c in rows),
                                                                                            width=9),
               "completion_mask": torch.tensor([[0] * p + [1] * c + [0] * (9 - p - c) for p, c in rows])}
    assert legacy_counts(old_dpo) == batch_counts(new_dpo) == (19, 9, 4)
    labels = torch.tensor([[-100, -100, 5, 6, -100, -100], [-100, 7, 8, -100, -100, -100]])
    kto = {"completion_input_ids": mask(4, 3), "completion_attention_mask": mask(4, 3), "completion_labels": labels,
           "KL_completion_input_ids": mask(4, 3), "KL_completion_attention_mask": mask(4, 3),
           "KL_completion_labels": labels}
    assert legacy_counts(kto) == (14, 8, 4)
    # trl 1.6.0's KTO: the same tokens, the completions marked by a mask instead of labels
    completion = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 1, 1, 0, 0, 0]])
    kto_16 = {k: v for k, v in kto.items() if not k.endswith("_labels")}
    kto_16 |= {"completion_mask": completion, "KL_completion_mask": completion}
    assert legacy_counts(kto_16) == (14, 8, 4)
    reward = {"input_ids_chosen": chosen, "attention_mask_chosen": chosen, "input_ids_rejected": rejected,
              "attention_mask_rejected": rejected}
    assert legacy_counts(reward) == (9, 9, 4)
    with pytest.raises(ValueError, match=r"no batch layout with the keys \['pixel_values'\]"):
        legacy_counts({"pixel_values": prompt})


def test_trl_before_0_29_on_transformers_5_skips_its_preference_and_generating_trainers(monkeypatch):
    """trl 0.24 to 0.27.2 errored on transformers 5.23 in DPO, GRPO and RLOO, and KTO until 0.27.2 (the release
    sweep); SFT, the reward model and transformers' Trainer ran, as did the same trl on transformers 4."""
    cases = {c.id: c for c in load_cases(ROOT / "cases")}
    dpo, kto = "tiny-llama/dpo/lora/base/preference", "tiny-llama/kto/lora/base/unpaired_preference"
    checks = ["tiny-llama/grpo/lora/base/prompt_only", "tiny-llama/rloo/lora/base/prompt_only", dpo]
    runs = ["tiny-llama/lora/base", "tiny-llama/reward/lora/base/preference", "tiny-llama/hf_trainer/lora/base"]
    for trl, transformers, refused in (("0.26.2", "5.23.0", checks + [kto]), ("0.27.2", "5.23.0", checks),
                                       ("0.29.0", "5.23.0", []), ("0.25.1", "4.57.6", [])):
        versions = {"trl": trl, "transformers": transformers}
        monkeypatch.setattr(compat, "package_version", lambda name, v=versions: v.get(name, "99"))
        for case_id in checks + [kto] + runs:
            case = cases[case_id]
            name = "kto_warnings_issued" if case_id == kto else "trl_package_checks"
            reasons = [r for r in compat.cannot_express(case, backend_for(case).version_needs(case))
                       if "transformers<5.0.0" in r]
            assert reasons == ([compat.REQUIREMENTS[name].missing()] if case_id in refused else []), \
                (trl, transformers, case_id)
    assert compat.REQUIREMENTS["trl_package_checks"].missing() is None  # transformers 4.57.6, above
    monkeypatch.setattr(compat, "package_version", lambda name: {"trl": "0.28.0", "transformers": "5.0.0"}[name])
    assert compat.REQUIREMENTS["trl_package_checks"].missing() == (
        "trl>=0.29.0 (or transformers<5.0.0) for trl's DPO, GRPO and RLOO trainers (before 0.29 trl misreads "
        "transformers 5's package check and imports packages that are not installed) (installed: trl 0.28.0, "
        "transformers 5.0.0)")
    reward = cases["tiny-llama/reward/lora/base/preference"]
    for trl, skips in (("0.23.1", True), ("0.24.0", False)):
        versions = {"trl": trl, "transformers": "5.23.0"}
        monkeypatch.setattr(compat, "package_version", lambda name, v=versions: v.get(name, "99"))
        reasons = compat.cannot_express(reward, backend_for(reward).version_needs(reward))
        assert reasons == ([compat.REQUIREMENTS["reward_warnings_issued"].missing()] if skips else []), trl
