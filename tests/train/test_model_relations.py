"""The trained model's relations in each causal-LM case's child (suite/train/modeling.py, judged by
suite/judge/modeling.py) on real tiny runs judged without baselines (tests.helpers.fault_runs): clean, every check
of the case passes; under each known modeling fault (suite/train/inject.py SEAMS, suite/train/backends/
modeling_faults.py) the case fails by the relation aimed at it alone, its message naming the cause. Six steps each.

`pad_labelled` is a collator fault: the trained model's own padding behaviour is unchanged (its right- and
left-padded rows agree with the rows alone), and it shows in the training loss (padding counted as targets);
what names it in the case is padding_invariance's collated variant, which runs the trainer's own collator and
counts the padding positions it labels."""
from __future__ import annotations

import pytest

from tests.helpers import BASE_MODELS, assert_fails_alone, check_outcomes, fault_runs

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("model-relations")]

MODELS = BASE_MODELS + "  tiny-mixtral: {size: tiny, arch: mixtral}\n"
SMALL = "training: {max_steps: 6}, checks: {loss_window: 3, loss_margin: 0.0}, benchmark: {warmup_steps: 1}"
LLAMA = f"matrix:\n  - {{models: [tiny-llama], methods: [lora], {SMALL}}}\n"
# cases/moe.yaml's LoRA entry, fewer steps
MIXTRAL = (f"matrix:\n  - {{models: [tiny-mixtral], methods: [lora], {SMALL}, lora: {{target_modules: [q_proj, k_proj, "
           f"v_proj, o_proj], target_parameters: [mlp.experts.gate_up_proj, mlp.experts.down_proj]}}}}\n")
RELATIONS = ("padding_invariance", "moe_aux_by_definition", "router_logits_are_logits")
# fault -> (the relation it must fail, what the message must say)
FAULTS = {
    "padding_mask_ignored": ("padding_invariance", "padding is attended (the attention mask is not applied)"),
    "pad_labelled": ("padding_invariance", "the trainer's collator labels"),
    "aux_softmax_twice": ("moe_aux_by_definition", "softmaxed a second time"),
    "router_probabilities": ("router_logits_are_logits", "router returns its softmax where its logits belong"),
    "aux_top_k_wrong": ("moe_aux_by_definition", "top 1 expert counted, not the config's top 2"),
}
MOE_FAULTS = ("aux_softmax_twice", "router_probabilities", "aux_top_k_wrong")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    out = {f"llama/{k}": r for k, r in fault_runs(tmp_path_factory.mktemp("llama"), LLAMA,
                                                   ("", "padding_mask_ignored", "pad_labelled"), MODELS).items()}
    out.update({f"mixtral/{k}": r for k, r in fault_runs(tmp_path_factory.mktemp("mixtral"), MIXTRAL,
                                                          ("",) + MOE_FAULTS,
                                                          MODELS).items()})
    return out


@pytest.mark.parametrize("model,measured", [("llama", RELATIONS[:1]), ("mixtral", RELATIONS)])
def test_clean_runs_pass_every_check_with_the_relations_measured(runs, model, measured):
    record = runs[f"{model}/clean"]
    checks = check_outcomes(record)
    assert set(measured) <= set(checks), sorted(checks)
    assert record.status == "passed", [c["message"] for c in record.checks if not c["passed"]]


@pytest.mark.parametrize("fault", FAULTS)
def test_each_modeling_fault_fails_its_case_by_its_relation_alone(runs, fault):
    model = "mixtral" if fault in MOE_FAULTS else "llama"
    record = runs[f"{model}/{fault}"]
    relation, says = FAULTS[fault]
    untouched = tuple(n for n in check_outcomes(runs[f"{model}/clean"]) if n != relation)
    assert_fails_alone(record, fault, relation, untouched)
    message = next(c["message"] for c in record.checks if c["name"] == relation)
    assert says in message, message
