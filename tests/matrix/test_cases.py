"""Case loading, matrix expansion, ids, markers, fingerprints, and every kind of bad input."""
from __future__ import annotations

import json

import pytest

from suite.errors import CaseError
from suite.cases import load_cases
from suite.cases import markers
from suite.paths import ROOT
from suite.train.backends.registry import backend_for
from tests.helpers import write_cases


def test_the_shipped_matrix_loads_and_covers_every_axis():
    cases = load_cases(ROOT / "cases")
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    for marker in ("full", "lora", "qlora", "unsloth", "packing", "neftune", "flash_attn", "tiny", "7b", "gpu",
                   "messages", "prompt_completion", "conversational_pc", "assistant_only", "completion_only",
                   "gradient_checkpointing", "eager", "dpo", "hf_trainer", "sft", "preference",
                   "conversational_preference", "grad_accum", "lora_8bit", "adamw_8bit", "liger", "chatml",
                   "modules_to_save", "trainable_tokens"):
        assert any(marker in c.markers for c in cases), marker
    assert {c.model.arch for c in cases if c.model.size == "tiny"} >= {"llama", "qwen2"}
    for c in cases:
        assert set(c.markers) <= set(markers()), c.id
    assert cases[0].model.size == "tiny"  # tiny rows first


def test_matrix_entry_expands_to_the_product_of_its_axes(tmp_path):
    d = write_cases(tmp_path, """
        matrix:
          - models: [tiny-llama, tiny-qwen2]
            methods: [full, lora]
            features: [base, packing+neftune, [neftune, packing]]
            datasets: [text, messages:assistant_only]
    """)
    with pytest.raises(CaseError, match="already declared"):  # [neftune, packing] == packing+neftune
        load_cases(d)
    (d / "matrix.yaml").write_text((d / "matrix.yaml").read_text().replace(", [neftune, packing]", ""))
    cases = load_cases(d)
    assert len(cases) == 2 * 2 * 2 * 2
    ids = {c.id for c in cases}
    assert "tiny-llama/lora/packing+neftune" in ids
    assert "tiny-qwen2/full/base/messages:assistant_only" in ids


def test_ids_markers_and_derived_fields():
    cases = {c.id: c for c in load_cases(ROOT / "cases")}
    c = cases["tiny-llama/qlora/packing"]
    assert c.slug == "tiny-llama__qlora__packing"
    assert {"qlora", "tiny", "packing", "adapter", "llama", "case"} <= set(c.markers)
    assert "gpu" not in c.markers
    pc = cases["tiny-llama/lora/base/prompt_completion"]
    assert pc.effective_loss == "completion_only" and "completion_only" in pc.markers
    big = next(c for c in cases.values() if c.model.size == "7b")
    assert {"7b", "large", "gpu"} <= set(big.markers)
    assert cases["tiny-llama/lora/eager"].attention == "eager"
    assert cases["tiny-llama/lora/base"].attention == "sdpa"


def test_layered_defaults_method_then_size_then_entry(tmp_path):
    d = write_cases(tmp_path, """
        matrix:
          - {models: [tiny-llama], methods: [lora]}
          - {models: [big], methods: [lora]}
          - {models: [tiny-qwen2], methods: [lora], training: {learning_rate: 0.5}, lora: {r: 4}}
    """, defaults="""
        defaults:
          training: {learning_rate: 0.1}
          by_method: {lora: {training: {learning_rate: 0.2}}}
          by_size: {7b: {training: {learning_rate: 0.3, max_steps: 40}}}
    """)
    lr = {c.model.name: c.training.learning_rate for c in load_cases(d)}
    assert lr == {"tiny-llama": 0.2, "big": 0.3, "tiny-qwen2": 0.5}
    assert next(c for c in load_cases(d) if c.model.name == "tiny-qwen2").lora.r == 4


def test_fingerprint_tracks_training_settings_and_mode_not_source(tmp_path):
    base = "matrix:\n  - {models: [tiny-llama], methods: [lora]%s}\n"
    a = load_cases(write_cases(tmp_path / "a", base % ""))[0]
    b = load_cases(write_cases(tmp_path / "b", base % ""))[0]
    c = load_cases(write_cases(tmp_path / "c", base % ", training: {learning_rate: 0.5}"))[0]
    assert a.source != b.source and a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert a.fingerprint != a.with_mode("benchmark").fingerprint
    assert a.with_mode("benchmark").steps == a.training.benchmark_steps


BAD_INPUTS = [
    # (matrix file text, field named in the error, words in the message)
    ("matrix: [\n  - {models: [tiny-llama]", "line", "not valid YAML"),
    ("- just\n- a list\n", "(document)", "must be a mapping"),
    ("matrixx: []\n", "matrixx", "unknown top-level key"),
    ("matrix:\n  - {models: [tiny-llama], methods: [qlor]}\n", "matrix[0].methods[0]", "unknown method 'qlor'"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], features: [pakcing]}\n", "matrix[0].features[0]",
     "unknown feature 'pakcing'"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], datasets: [csv]}\n", "matrix[0].datasets[0].format",
     "unknown dataset format 'csv'"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], datasets: ['messages:prompt_only']}\n",
     "matrix[0].datasets[0].loss", "unknown loss"),
    ("matrix:\n  - {models: [tiny-lama], methods: [lora]}\n", "matrix[0].models[0]", "unknown model 'tiny-lama'"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], training: {learnign_rate: 1}}\n",
     "matrix[0].training.learnign_rate", "unknown field"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], training: {max_steps: many}}\n",
     "matrix[0].training.max_steps", "expected int"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], training: {learning_rate: -1.0}}\n",
     "matrix[0].training.learning_rate", "must not be negative"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], epochs: 3}\n", "matrix[0].epochs", "unknown field"),
    ("matrix:\n  - {models: [tiny-llama]}\n", "matrix[0].methods", "required"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], features: [eager+sdpa]}\n", "matrix[0]",
     "at most one attention variant"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], datasets: ['text:assistant_only']}\n", "matrix[0]",
     "assistant_only loss needs a conversational format"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], datasets: ['messages:completion_only']}\n", "matrix[0]",
     "completion_only loss needs a prompt-completion format"),
    ("matrix:\n  - {models: [tiny-llama], methods: [unsloth], features: [eager]}\n", "matrix[0]",
     "unsloth picks its own attention"),
    ("matrix:\n  - {models: [tiny-qwen2], methods: [unsloth]}\n", "matrix[0]",
     "unsloth with a qwen2 model built by the suite"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], training: {max_steps: 4}}\n", "matrix[0]",
     "must be at least 2 x checks.loss_window"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora]}\n  - {models: [tiny-llama], methods: [lora]}\n",
     "matrix[1]", "already declared in"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], features: [packing+packing]}\n",
     "matrix[0].features[0]", "listed twice"),
    ("matrix:\n  - {models: [tiny-llama], methods: []}\n", "matrix[0].methods", "non-empty list"),
    # the trainer axis
    ("matrix:\n  - {models: [tiny-llama], trainers: [ppo], methods: [lora]}\n", "matrix[0].trainers[0]",
     "unknown trainer 'ppo'; known: sft, dpo, hf_trainer"),
    ("matrix:\n  - {models: [tiny-llama], trainers: [dpo], methods: [lora]}\n", "matrix[0]",
     "trl DPOTrainer trains on preference, conversational_preference data, not text"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], datasets: [preference]}\n", "matrix[0]",
     "trl SFTTrainer trains on text, messages, prompt_completion, conversational_pc, chatml data, not preference"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], datasets: [chatml]}\n", "matrix[0]",
     "chatml adds tokens: an adapter case with exactly one of modules_to_save, trainable_tokens"),
    ("matrix:\n  - {models: [tiny-llama], methods: [full], features: [modules_to_save], datasets: [chatml]}\n",
     "matrix[0]", "got modules_to_save with full"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], features: [modules_to_save+trainable_tokens], "
     "datasets: [chatml]}\n", "matrix[0]", "got modules_to_save and trainable_tokens"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], features: [trainable_tokens]}\n", "matrix[0]",
     "trainable_tokens is how an adapter carries added tokens: it needs chatml data"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], checks: {eval_falls: true}}\n", "matrix[0]",
     "checks.eval_falls needs an eval split: set training.eval_samples"),
    ("matrix:\n  - {models: [tiny-llama], methods: [unsloth], features: [liger]}\n", "matrix[0]",
     "patches the model with its own kernels; do not combine it with liger"),
    ("matrix:\n  - {models: [tiny-llama], trainers: [dpo], methods: [lora], features: [packing], "
     "datasets: [preference]}\n", "matrix[0]", "trl DPOTrainer cannot train with packing"),
    ("matrix:\n  - {models: [tiny-llama], trainers: [dpo], methods: [lora], datasets: ['preference:full']}\n",
     "matrix[0]", "a preference format's loss is DPO's"),
    ("matrix:\n  - {models: [tiny-llama], trainers: [hf_trainer], methods: [full]}\n", "matrix[0]",
     "no backend trains method 'full' with trainer 'hf_trainer'; hf_trainer trains: lora, qlora"),
    ("matrix:\n  - {models: [tiny-llama], trainers: [dpo], methods: [unsloth], datasets: [preference]}\n",
     "matrix[0]", "no backend trains method 'unsloth' with trainer 'dpo'"),
    ("matrix:\n  - {models: [tiny-llama], trainers: [hf_trainer], methods: [lora], datasets: [messages]}\n",
     "matrix[0]", "trains on text data, not messages"),
    # values peft or trl would refuse (or misread) only when the case runs
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], lora: {r: 0}}\n", "matrix[0].lora.r",
     "must be at least 1 (peft refuses a rank of 0)"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], lora: {alpha: -16}}\n", "matrix[0].lora.alpha",
     "must not be negative"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], lora: {alpha: 0}}\n", "matrix[0].lora.alpha",
     "must be positive"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], lora: {dropout: 1.0}}\n", "matrix[0].lora.dropout",
     "must be in [0, 1)"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], lora: {dropout: 1.5}}\n", "matrix[0].lora.dropout",
     "must be in [0, 1)"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], training: {learning_rate: 0}}\n",
     "matrix[0].training.learning_rate", "must be positive"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], training: {lr_scheduler: cosin}}\n",
     "matrix[0].training.lr_scheduler", "must be one of linear, cosine"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], training: {precision: bf32}}\n",
     "matrix[0].training.precision", "must be one of auto, bf16"),
    ("matrix:\n  - {models: [tiny-llama], methods: [lora], checks: {loss_margin: 1.2}}\n",
     "matrix[0].checks.loss_margin", "must be in [0, 1)"),
]


@pytest.mark.parametrize("text,field,words", BAD_INPUTS, ids=[b[2] for b in BAD_INPUTS])
def test_bad_matrix_input_names_file_and_field(tmp_path, text, field, words):
    d = write_cases(tmp_path, "")
    (d / "matrix.yaml").write_text(text)
    with pytest.raises(CaseError) as err:
        load_cases(d)
    assert err.value.file.endswith("matrix.yaml")
    assert err.value.field.startswith(field), err.value
    assert words in err.value.message, err.value


@pytest.mark.parametrize("models,field,words", [
    ("models:\n  m: {size: 13b, arch: llama}\n", "models.m.size", "must be one of"),
    ("models:\n  m: {size: tiny, arch: gpt2}\n", "models.m.arch", "needs arch"),
    ("models:\n  m: {size: 7b}\n", "models.m.hub_id", "needs hub_id"),
    ("models:\n  m: {size: 7b, hub_id: a/b, revision: main}\n", "models.m.revision", "unknown field"),
    ("models:\n  m: [tiny]\n", "models.m", "must be a mapping"),
])
def test_bad_model_declarations(tmp_path, models, field, words):
    d = write_cases(tmp_path, "matrix: []\n", models=models)
    with pytest.raises(CaseError) as err:
        load_cases(d)
    assert err.value.file.endswith("models.yaml") and err.value.field == field and words in err.value.message


def test_a_case_file_that_is_not_utf8_is_named(tmp_path):
    d = write_cases(tmp_path, "")
    (d / "matrix.yaml").write_bytes(b"matrix:\n  - {models: [tiny-llama], methods: [lora]}  # caf\xe9\n\xff\n")
    with pytest.raises(CaseError) as err:
        load_cases(d)
    assert err.value.file.endswith("matrix.yaml"), err.value
    assert "not UTF-8 text: byte 0xe9 at line 2" in err.value.message, err.value


def test_a_defaults_file_value_is_checked_like_an_entry(tmp_path):
    d = write_cases(tmp_path, "matrix: []\n", defaults="defaults:\n  by_method: {lora: {lora: {r: 0}}}\n")
    with pytest.raises(CaseError, match=r"_base.yaml: defaults.by_method.lora.lora.r: must be at least 1"):
        load_cases(d)


def test_bad_defaults(tmp_path):
    d = write_cases(tmp_path, "matrix: []\n", defaults="defaults:\n  by_method: {qlora2: {}}\n")
    with pytest.raises(CaseError, match=r"_base.yaml: defaults.by_method.qlora2: unknown value"):
        load_cases(d)
    (d / "other.yaml").write_text("defaults: {timeout_s: 5}\n")
    (d / "_base.yaml").write_text("defaults: {timeout_s: 10}\n")
    with pytest.raises(CaseError, match="declare defaults once"):
        load_cases(d)


def test_missing_case_directory(tmp_path):
    with pytest.raises(CaseError, match="case directory not found"):
        load_cases(tmp_path / "nope")


def test_grad_accum_splits_the_batch_and_refuses_one_it_cannot_split(tmp_path):
    ok = load_cases(write_cases(tmp_path / "a", "matrix:\n  - {models: [tiny-llama], methods: [lora], "
                                                "features: [grad_accum]}\n"))
    assert [c.id for c in ok] == ["tiny-llama/lora/grad_accum"] and "grad_accum" in ok[0].markers
    with pytest.raises(CaseError, match="grad_accum splits training.batch_size into 4 micro-batches: 6 is not"):
        load_cases(write_cases(tmp_path / "b", "matrix:\n  - {models: [tiny-llama], methods: [lora], "
                                               "features: [grad_accum], training: {batch_size: 6}}\n"))


def test_the_trainer_axis_names_its_cases_and_keeps_sft_fingerprints(tmp_path):
    cases = load_cases(write_cases(tmp_path, """
        matrix:
          - {models: [tiny-llama], methods: [lora]}
          - {models: [tiny-llama], trainers: [dpo], methods: [lora], datasets: [preference]}
          - {models: [tiny-llama], trainers: [hf_trainer], methods: [lora]}
        """))
    sft, dpo, plain = cases
    assert (sft.id, dpo.id, plain.id) == ("tiny-llama/lora/base", "tiny-llama/dpo/lora/base/preference",
                                          "tiny-llama/hf_trainer/lora/base")
    assert "sft" in sft.markers and "dpo" in dpo.markers and "hf_trainer" in plain.markers
    assert "trainer" not in sft.to_dict() and dpo.to_dict()["trainer"] == "dpo"
    assert len({sft.fingerprint, dpo.fingerprint, plain.fingerprint}) == 3
    assert backend_for(dpo).checks and not backend_for(sft).checks and backend_for(plain).name.startswith("transformers")
    # the shipped SFT cases' fingerprints are the ones their golden curves were recorded under before the axis
    shipped = next(c for c in load_cases(ROOT / "cases") if c.id == "tiny-llama/lora/base")
    golden = json.loads((ROOT / "results" / "baselines" / "cpu" / "avx2" / f"{shipped.slug}.json").read_text())
    assert golden["fingerprint"] == shipped.fingerprint == "d18eb20bff3978bf"


@pytest.mark.parametrize("text, words", [
    ("{models: [tiny-llama], methods: [lora_8bit], features: [fsdp]}", "fsdp cannot shard bitsandbytes' 8-bit"),
    ("{models: [tiny-llama], methods: [lora], features: [modules_to_save+ddp], datasets: [chatml]}",
     "chatml resizes the embeddings and saves from one process"),
    ("{models: [tiny-llama], methods: [unsloth], features: [modules_to_save], datasets: [chatml]}",
     "unsloth trains on text, messages, prompt_completion, conversational_pc data, not chatml"),
])
def test_combinations_that_would_break_at_run_time_are_refused_at_load(tmp_path, text, words):
    with pytest.raises(CaseError, match=words):
        load_cases(write_cases(tmp_path, f"matrix:\n  - {text}\n"))


def test_the_typed_axes_answer_what_the_names_meant():
    """What the code asks of a case's features, format, loss and size (suite/matrix/axes.py), against what
    the names meant when it compared them: the shipped matrix's cases, each asked."""
    from suite.matrix.axes import GA_STEPS, PROMPT_FORMATS

    cases = load_cases(ROOT / "cases")
    for c in cases:
        f = set(c.features)
        assert c.uses.micro_batches == (GA_STEPS if "grad_accum" in f else 1), c.id
        assert c.uses.optim == ("adamw_8bit" if "adamw_8bit" in f else None), c.id
        assert (c.uses.packs, c.uses.noise, c.uses.checkpointing, c.uses.own_kernels, c.uses.adapter_dropout,
                c.uses.whole_embeddings) == ("packing" in f, "neftune" in f, "gradient_checkpointing" in f,
                                             "liger" in f, "lora_dropout" in f, "modules_to_save" in f), c.id
        assert c.uses.gpu_for == [w for n, w in (("liger", "Liger's Triton kernels"),
                                                 ("flash_attn", "flash-attention 2")) if n in f], c.id
        assert c.loss_kind.assistant_turns == (c.effective_loss == "assistant_only"), c.id
        assert c.format.prompt == (c.dataset in PROMPT_FORMATS), c.id
        assert c.model.scale.built == (c.model.size == "tiny"), c.id
        assert (c.model.scale.gpu_for is not None) == (c.model.size == "7b"), c.id
    assert {c.attention for c in cases} >= {"sdpa", "eager"}


def test_a_feature_set_asks_each_feature():
    from suite.matrix.axes import FeatureSet

    uses = FeatureSet.of(("grad_accum", "fsdp", "eager", "flash_attn", "adamw_8bit"))
    # flash_attn before eager in the canonical order: it wins, as Case.attention always chose
    assert uses.micro_batches == 4 and uses.optim == "adamw_8bit" and uses.attention == "flash_attention_2"
    assert uses.distributed.name == "fsdp" and uses.distributed.shards and uses.distributed.launch == "--use_fsdp"
    assert [p.pip for p in uses.packages] == ["bitsandbytes", "flash-attn"]
    assert uses.version_needs == [] and FeatureSet.of(("packing", "neftune")).version_needs == ["packing_bfd", "neftune"]
    assert FeatureSet.of(()).attention == "sdpa" and FeatureSet.of(()).distributed is None
    with pytest.raises(KeyError):
        FeatureSet.of(("pakcing",))


def test_an_option_label_names_the_case_marks_it_and_must_name_what_extra_sets(tmp_path):
    """Cases that differ only in training.extra (issue 37's covering design) are told apart by their option
    label: the id's last part and the `options` marker; a label naming a field extra does not set is refused."""
    cases = load_cases(write_cases(tmp_path / "a", """
        matrix:
          - {models: [tiny-llama], trainers: [dpo], methods: [lora], datasets: [preference]}
          - {models: [tiny-llama], trainers: [dpo], methods: [lora], datasets: [preference],
             option: loss_type:ipo, training: {extra: {loss_type: [ipo]}}}
        """))
    plain, ipo = cases
    assert ipo.id == "tiny-llama/dpo/lora/base/preference/loss_type:ipo" and "options" in ipo.markers
    assert "options" not in plain.markers and "option" not in plain.to_dict() and ipo.to_dict()["option"]
    assert plain.fingerprint != ipo.fingerprint
    for label, words in (("loss_type:ipo", "names loss_type, which training.extra does not set"),
                         ("loss type", "must be name:value pairs")):
        d = write_cases(tmp_path / label.replace(" ", "_"), f"""
            matrix:
              - {{models: [tiny-llama], trainers: [dpo], methods: [lora], datasets: [preference], option: "{label}"}}
            """)
        with pytest.raises(CaseError) as err:
            load_cases(d)
        assert err.value.field == "matrix[0].option" and words in err.value.message, err.value
