"""The training mechanics' relations (suite/judge/mechanics.py) on real tiny runs, judged without baselines:
for every trainer's LoRA case a clean run passes them, and one run with the four mechanics faults
(suite/train/mechanics_faults.py: the schedule read a step ahead, clipping at a tenth of max_grad_norm,
weight decay where the config says 0, LoRA scaled by alpha/sqrt(r)) fails each of the four relations with
its cause named; on SFT LoRA each fault alone (and `update_overshoot`, the optimizer stepping 10% further than
AdamW) fails its relation only; a full fine-tune sees the four that apply to it. Six optimizer steps each (the relations hold per step; nothing here needs the loss to fall)."""
from __future__ import annotations

import functools

import pytest

from tests.helpers import assert_fails_alone, check_outcomes, fault_runs

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mechanics-faults")]

SMALL = ("training: {{max_steps: 6, batch_size: 8{extra}}}, checks: {{loss_window: 3}}, "
         "benchmark: {{warmup_steps: 1}}")
# trainer -> its LoRA case's matrix entry (what cases/*.yaml say of it, fewer steps)
ENTRIES = {
    "sft": "models: [tiny-llama], methods: [lora]",
    "hf_trainer": "models: [tiny-llama], trainers: [hf_trainer], methods: [lora]",
    "dpo": "models: [tiny-llama], trainers: [dpo], methods: [lora], datasets: [preference]",
    "kto": "models: [tiny-llama], trainers: [kto], methods: [lora], datasets: [unpaired_preference]",
    "reward": "models: [tiny-llama], trainers: [reward], methods: [lora], datasets: [preference]",
    "grpo": "models: [tiny-llama], trainers: [grpo], methods: [lora], datasets: [prompt_only]",
    "rloo": "models: [tiny-llama], trainers: [rloo], methods: [lora], datasets: [prompt_only]",
}
EXTRA = {"kto": ", extra: {beta: 1.0}", "grpo": ", extra: {beta: 0.04}"}
# relation -> (its fault, what its failure message must say)
RELATIONS = {
    "lr_schedule": ("lr_ahead", "the scheduler does not follow the configured schedule"),
    "grad_clipping": ("clip_threshold", "not clipped at max_grad_norm"),
    "weight_decay_groups": ("decay_where_zero", "weight decay is applied where the config does not say so"),
    "lora_scaling": ("lora_sqrt_scale", "not lora_alpha / r"),
}
ALL = ",".join(fault for fault, _ in RELATIONS.values())
# and the AdamW update's, alone (the four above leave the update holding)
UPDATE = ("optimizer_update", "update_overshoot", "does not apply the AdamW update")
SINGLE = {**RELATIONS, UPDATE[0]: UPDATE[1:]}
SFT = ("", ALL, *(fault for fault, _ in SINGLE.values()))  # SFT LoRA's runs: clean, together, each alone
FULL = tuple(r for r in SINGLE if r != "lora_scaling")  # what a full fine-tune has


def matrix(entry: str, extra: str = "") -> str:
    return f"matrix:\n  - {{{entry}, {SMALL.format(extra=extra)}}}\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> {fault or "clean": record}, each run on first use (xdist keeps the module on one worker)."""
    @functools.cache
    def run(name: str, faults: tuple[str, ...]) -> dict:
        entry = ENTRIES.get(name, "models: [tiny-llama], methods: [full]")
        return fault_runs(tmp_path_factory.mktemp(name.replace("_", "")), matrix(entry, EXTRA.get(name, "")), faults)

    return run


def message(record, name: str) -> str:
    return next(c["message"] for c in record.checks if c["name"] == name)


@pytest.mark.parametrize("trainer", ENTRIES)
def test_every_trainer_passes_the_mechanics_clean_and_fails_each_under_its_fault(runs, trainer):
    """The clean run passes all five relations; with the four faults together each of the four fails,
    naming its cause, and the AdamW update (untouched by them) still holds."""
    recs = runs(trainer, SFT if trainer == "sft" else ("", ALL))
    clean, faulty = check_outcomes(recs["clean"]), recs[ALL]
    assert all(clean[n] for n in (*RELATIONS, "optimizer_update")), [c["message"] for c in recs["clean"].checks
                                                                    if not c["passed"]]
    assert faulty.resolved["injected"] == {f: 1.0 for f in ALL.split(",")}
    outcomes = check_outcomes(faulty)
    for name, (_, words) in RELATIONS.items():
        assert not outcomes[name] and words in message(faulty, name), message(faulty, name)
    assert outcomes["optimizer_update"], message(faulty, "optimizer_update")


@pytest.mark.parametrize("relation", SINGLE)
def test_each_fault_alone_fails_only_its_relation_on_sft_lora(runs, relation):
    fault, words = SINGLE[relation]
    rec = runs("sft", SFT)[fault]
    others = tuple(n for n in SINGLE if n != relation)
    assert_fails_alone(rec, fault, relation, others + ("adapter_only", "checkpoint_size", "reload_logits"))
    assert words in message(rec, relation), message(rec, relation)


@pytest.mark.parametrize("relation", FULL)
def test_a_full_fine_tune_sees_the_faults_that_apply_to_it(runs, relation):
    recs = runs("full", ("", *(SINGLE[r][0] for r in FULL)))
    clean = check_outcomes(recs["clean"])
    assert "lora_scaling" not in clean
    assert all(clean[n] for n in FULL), [c["message"] for c in recs["clean"].checks if not c["passed"]]
    fault, words = SINGLE[relation]
    others = tuple(n for n in FULL if n != relation)
    assert_fails_alone(recs[fault], fault, relation, others + ("full_checkpoint", "reload_logits"))
    assert words in message(recs[fault], relation)
