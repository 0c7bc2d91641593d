"""Model sources: tiny models built offline from a config, and real checkpoints by hub id or path.

Tiny models are materialised once into a local directory (config, random weights, a tokenizer
built in code) so that every case, tiny or 7B, goes through the same `from_pretrained(path)`.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from suite.matrix.axes import SIZE
from suite.train import data
from suite.train.chat import STYLES, ChatStyle
from suite.versions import package_version, version_at_least

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]

# {% generation %} marks what assistant_only_loss trains on; the end-of-turn token is inside it
# so the model learns to stop (trl warns otherwise).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}<|assistant|> {% generation %}{{ message['content'] }} <|end|>{% endgeneration %} "
    "{% else %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)

# Small enough to train in seconds on two CPU cores, big enough to have every module type
# a LoRA targets. hidden_size is a multiple of 64 so bitsandbytes' 4-bit blocks fit.
TINY_ARCHS: dict[str, dict] = {
    "llama": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  tie_word_embeddings=False),
    "mistral": dict(model_type="mistral", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                    tie_word_embeddings=False, sliding_window=None),
    # A mixture of experts: 4 experts of Mistral's MLP, 2 per token. transformers 5 stores each layer's
    # experts fused as two 3-D parameters (mlp.experts.gate_up_proj, down_proj) that are no nn.Linear.
    # The router's load-balancing loss is on (output_router_logits) at OLMoE's coefficient 0.01
    # (Mixtral's published 0.001 would make it a 1e-3 share of the loss: a fault in it would hide in
    # the curves' rounding); trl's SFTTrainer reads both from the config.
    "mixtral": dict(model_type="mixtral", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                    tie_word_embeddings=False, sliding_window=None, num_local_experts=4, num_experts_per_tok=2,
                    output_router_logits=True, router_aux_loss_coef=0.01),
    # The families people fine-tune at the end of 2026 (issue 38), each in its own transformers classes, at
    # the tiny size above, with what makes the family different switched on where a default would hide it.
    # Llama 3.x: the llama3 rope scaling (its frequency bands decide every position at this context) and
    # embeddings tied to the head, as in the small 3.2 models.
    "llama3": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                   tie_word_embeddings=True,
                   rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 64}),
    # Qwen3: RMS norms on the queries and keys, an explicit head_dim.
    "qwen3": dict(model_type="qwen3", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                  tie_word_embeddings=False),
    # Qwen3-MoE: 4 experts of 2 per token, no shared expert, fused 3-D expert weights; the router's
    # auxiliary loss on at the coefficient the Mixtral row uses.
    "qwen3_moe": dict(model_type="qwen3_moe", hidden_size=64, intermediate_size=128, moe_intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      max_position_embeddings=512, tie_word_embeddings=False, num_experts=4, num_experts_per_tok=2,
                      decoder_sparse_step=1, mlp_only_layers=[], output_router_logits=True,
                      router_aux_loss_coef=0.01),
    # Qwen3.5: a gated-DeltaNet linear-attention layer, then a full-attention layer (the published ratio is
    # 3:1; one of each keeps both at two layers). On a CPU transformers runs its torch fallbacks.
    "qwen3_5": dict(model_type="qwen3_5_text", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                    tie_word_embeddings=False, layer_types=["linear_attention", "full_attention"],
                    linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2,
                    linear_num_value_heads=4),
    # Gemma 3 text: a sliding-window layer, then a global one; the window (8) is shorter than the cases'
    # max_length (64), so it masks (the default 4096 would not, and two default layers would both slide).
    # Its norms, the embedding scale sqrt(hidden) and tied embeddings are the class's own.
    "gemma3": dict(model_type="gemma3_text", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
                   max_position_embeddings=512, tie_word_embeddings=True, sliding_window=8,
                   layer_types=["sliding_attention", "full_attention"]),
    # Gemma 4 text: Gemma 3's layout plus what it changes: per-layer input embeddings, a wider head on the
    # global layer (per_layer_config) and proportional partial rotary embeddings there.
    "gemma4": dict(model_type="gemma4_text", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                   tie_word_embeddings=True, sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                   hidden_size_per_layer_input=16, per_layer_config={"01": {"head_dim": 32}}),
    # Phi-4-mini (Phi-3's classes): fused qkv_proj and gate_up_proj, so LoRA's target names differ.
    "phi4_mini": dict(model_type="phi3", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True),
    # gpt-oss: attention sinks, sliding and full layers, 4 experts of 2 per token with expert biases (fused
    # 3-D weights), the yarn rope scaling. Its class does not support SDPA: eager attention.
    "gpt_oss": dict(model_type="gpt_oss", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                    tie_word_embeddings=False, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
                    layer_types=["sliding_attention", "full_attention"], output_router_logits=True,
                    router_aux_loss_coef=0.01,
                    rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 4.0, "beta_fast": 32.0,
                                     "beta_slow": 1.0, "truncate": False,
                                     "original_max_position_embeddings": 128}),
    # SmolLM3: rotary embeddings left out of some layers (no_rope_layers: 1 uses them, 0 does not).
    "smollm3": dict(model_type="smollm3", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                    tie_word_embeddings=True, no_rope_layers=[1, 0]),
}
# A variant of the llama tiny model that ships a generation_config.json with non-default sampling (as Llama 3's
# does: temperature 0.6, top_p 0.9), plus a top_k and a min_p: trl's GRPO/RLOO build their own GenerationConfig
# from their config, and these files' values must not be what sampled (backends/online/sampling.py). min_p is
# one trl leaves None (its default), which transformers then fills from the model's file.
TINY_ARCHS["llama_sampling"] = dict(TINY_ARCHS["llama"])
TINY_GENERATION: dict[str, dict] = {
    "llama_sampling": dict(do_sample=True, temperature=0.6, top_k=7, top_p=0.85, min_p=0.05),
}
# The per-layer input embeddings of Gemma 4 are as wide as the vocabulary: set with it (tiny_config).
PER_LAYER_VOCAB = {"gemma4": "vocab_size_per_layer_input"}


TINY_MARKER = "ftsuite-tiny.json"  # written last: a directory without it is incomplete
RANDOM_MARKER = "ftsuite-random.json"  # likewise, for 7B-shaped models with random weights


class ModelNotAvailable(Exception):
    """The weights of a model are not on this machine; the message says how to provide them."""


@dataclass(frozen=True)
class ResolvedModel:
    path: str  # a local directory holding config, weights and tokenizer
    source: str  # "tiny", "env", "hf-cache", "path", "random-config"
    built_s: float = 0.0  # time spent materialising it now (0 when it was already on disk)


def build_tokenizer(style: ChatStyle | None = None):
    """A word-level fast tokenizer over the synthetic data's vocabulary, with a chat template: the suite's
    own, or a family's (suite/train/chat.py: its markers as special tokens, its role names as words)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base, markers = SPECIAL_TOKENS[:4], SPECIAL_TOKENS[4:]  # pad, unk, bos, eos keep ids 0-3 in every family
    if style is not None:
        markers = list(style.special)
    words = [w for w in (style.words if style else ()) if w not in data.vocabulary()]
    vocab = {tok: i for i, tok in enumerate(base + markers + data.vocabulary() + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=markers,
    )
    fast.chat_template = style.template if style else CHAT_TEMPLATE
    return fast


def load_tokenizer(path: str | Path, base: str | Path | None = None):
    """The tokenizer saved in a model directory (`base`: the model it was trained from, for a
    checkpoint's directory, which carries no marker of its own).

    transformers 5 lets AutoTokenizer prefer the architecture's own tokenizer class (Qwen2's
    BPE) over the saved tokenizer.json, which would silently replace the tiny word-level
    tokenizer; tiny directories, and checkpoints trained from one, are therefore read with the
    generic fast class.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    built = [Path(p) for p in (path, base) if p is not None]
    if any((p / TINY_MARKER).exists() or (p / RANDOM_MARKER).exists() for p in built):
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))


def tiny_config(arch: str, vocab_size: int):
    from transformers import AutoConfig

    if arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; known: {', '.join(TINY_ARCHS)}")
    spec = dict(TINY_ARCHS[arch])
    model_type = spec.pop("model_type")
    if arch in PER_LAYER_VOCAB:
        spec[PER_LAYER_VOCAB[arch]] = vocab_size
    if "rope_parameters" in spec and not version_at_least(package_version("transformers"), "5.0.0"):
        # transformers 4 reads the same settings as rope_theta and rope_scaling (5 renamed them)
        rope = dict(spec.pop("rope_parameters"))
        spec["rope_theta"] = rope.pop("rope_theta")
        spec["rope_scaling"] = rope
    return AutoConfig.for_model(model_type, vocab_size=vocab_size, pad_token_id=0, bos_token_id=2,
                                eos_token_id=3, **spec)


def cache_root() -> Path:
    # an empty value (an unset CI variable) means the default, not the working directory
    return Path(os.environ.get("FTSUITE_CACHE") or Path.home() / ".cache" / "ftsuite")


def file_format() -> str:
    """Which transformers wrote a model directory's config and tokenizer files, as far as reading
    them back goes: files written by 5.x break 4.x's loader (the tokenizer's `extra_special_tokens`
    list, for one), so an upgrade check across the major version needs a directory per major.
    The weights do not depend on it: 4.56.2 and 5.23.0 initialise the tiny models identically."""
    return f"transformers-{(package_version('transformers') or '0').split('.')[0]}"


def materialise_tiny(arch: str, seed: int = 0, root: Path | None = None) -> Path:
    """Build (once) a tiny random model and its tokenizer into a directory and return it."""
    style = STYLES.get(arch)
    key = {"arch": TINY_ARCHS.get(arch), "vocab": data.vocabulary(), "template": CHAT_TEMPLATE, "seed": seed,
           "format": file_format()}
    if style is not None:  # the original four keep their key, so their cached models are reused
        key.update(template=style.template, special=list(style.special), words=list(style.words))
    if arch in TINY_GENERATION:  # likewise: only the variant's key names its generation config
        key["generation"] = TINY_GENERATION[arch]
    spec_key = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(spec_key.encode()).hexdigest()[:12]
    out = (root or cache_root()) / "tiny" / f"{arch}-{digest}"
    if (out / TINY_MARKER).exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer(style)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, len(tokenizer)))
    for field, value in TINY_GENERATION.get(arch, {}).items():  # saved as its generation_config.json
        setattr(model.generation_config, field, value)
    return _publish(out, model, tokenizer, TINY_MARKER, spec_key)


def _publish(out: Path, model, tokenizer, marker: str, spec_key: str) -> Path:
    """Save model and tokenizer beside `out`, mark it complete, then move it into place.

    Atomic for concurrent cases: a directory is only ever seen whole, and a second builder's copy
    (identical, from the same spec) is dropped.
    """
    import shutil

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / marker).write_text(spec_key + "\n")
    try:
        tmp.rename(out)
    except OSError:  # another process finished first: theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _hf_cache_snapshot(hub_id: str) -> Path | None:
    hub_cache = Path(os.environ.get("HF_HUB_CACHE")
                     or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    repo_dir = hub_cache / ("models--" + hub_id.replace("/", "--"))
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        snap = repo_dir / "snapshots" / ref.read_text().strip()
        if (snap / "config.json").is_file():
            return snap
    snaps = sorted((repo_dir / "snapshots").glob("*/config.json")) if repo_dir.is_dir() else []
    return snaps[-1].parent if snaps else None


def _check_model_dir(path: Path, where: str) -> None:
    if not path.is_dir():
        raise ModelNotAvailable(f"{where} points at {path}, which is not a directory")
    if not (path / "config.json").is_file():
        raise ModelNotAvailable(f"{where} points at {path}, which has no config.json")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelNotAvailable(f"{where} points at {path}, which holds no weights (*.safetensors or *.bin)")


def random_config(config_file: str | Path, vocab_size: int | None = None, overrides: dict | None = None):
    """A transformers config from an architecture's config.json, with the tokenizer's special ids."""
    from transformers import AutoConfig

    spec = {k: v for k, v in json.loads(Path(config_file).read_text()).items() if not k.startswith("_")}
    spec.pop("architectures", None)
    spec.update(overrides or {})
    if vocab_size is not None:  # only ever to grow it: a 7B shape keeps its embedding and LM head size
        spec["vocab_size"] = max(spec.get("vocab_size", 0), vocab_size)
    model_type = spec.pop("model_type")
    return AutoConfig.for_model(model_type, pad_token_id=0, bos_token_id=2, eos_token_id=3, **spec)


@functools.lru_cache(maxsize=None)
def random_param_count(config_file: str | Path) -> int:
    """Parameters of the architecture, counted on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(random_config(config_file))
    return sum(p.numel() for p in model.parameters())


def _random_dir(config_file: str | Path, seed: int, root: Path | None, overrides: dict | None) -> tuple[Path, str]:
    spec_key = json.dumps({"config": Path(config_file).read_text(), "overrides": overrides or {},
                           "vocab": data.vocabulary(), "template": CHAT_TEMPLATE, "seed": seed,
                           "dtype": "bfloat16", "format": file_format()}, sort_keys=True)
    digest = hashlib.sha256(spec_key.encode()).hexdigest()[:12]
    return (root or cache_root()) / "random" / f"{Path(config_file).stem}-{digest}", spec_key


def materialise_random(config_file: str | Path, seed: int = 0, root: Path | None = None,
                       overrides: dict | None = None) -> Path:
    """Build (once) a model of the config's shape with random bf16 weights, and the tokenizer.

    Saved as safetensors so that cases load it through the real `from_pretrained(path)` (and
    bitsandbytes quantises it there, as it would real weights). Initialised on the GPU when there
    is one: a 7B model in bf16 takes seconds there, minutes on a CPU.
    """
    out, spec_key = _random_dir(config_file, seed, root, overrides)
    if (out / RANDOM_MARKER).exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(random_config(config_file, len(tokenizer), overrides),
                                                 dtype=torch.bfloat16)
    _publish(out, model, tokenizer, RANDOM_MARKER, spec_key)
    del model
    if device == "cuda":  # the case that built it trains next in this process: give the memory back
        torch.cuda.empty_cache()
    return out


def _check_random_room(config_file: str | Path, root: Path | None = None) -> None:
    """Refuse up front when the cache cannot hold the weights (2 bytes per parameter)."""
    import shutil

    out, _ = _random_dir(config_file, 0, root, None)
    if (out / RANDOM_MARKER).exists():
        return
    try:
        count = random_param_count(config_file)
    except ValueError:  # a model_type the installed transformers has no class for (Qwen3.5 and Gemma 4 on 4.x)
        import transformers

        model_type = json.loads(Path(config_file).read_text()).get("model_type")
        raise ModelNotAvailable(f"transformers {transformers.__version__} has no class for {Path(config_file).name}'s "
                                f"model_type {model_type!r}") from None
    need = count * 2 * 1.02 + 64 * 2**20
    where = out.parent
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < need:
        raise ModelNotAvailable(
            f"{need / 2**30:.1f} GiB free disk for random weights of {Path(config_file).name} under "
            f"{out.parent} (set FTSUITE_CACHE elsewhere); {free / 2**30:.1f} GiB free")


def resolve(kind: str, *, arch: str | None = None, hub_id: str | None = None, env: str | None = None,
            path: str | None = None, config: str | None = None, materialise: bool = True) -> ResolvedModel:
    """Find the local directory of a model, or raise ModelNotAvailable saying what to set.

    materialise=False only checks that a model could be had (for skip reasons, in the parent):
    tiny and random-weight models are then not built.
    """
    if SIZE[kind].built:
        return ResolvedModel(str(materialise_tiny(arch or "llama")) if materialise else "", "tiny")
    if config:
        if not materialise:
            _check_random_room(config)
            return ResolvedModel("", "random-config")
        import time

        t0 = time.perf_counter()
        existed = (_random_dir(config, 0, None, None)[0] / RANDOM_MARKER).exists()
        out = materialise_random(config)
        return ResolvedModel(str(out), "random-config", 0.0 if existed else time.perf_counter() - t0)
    if path:
        _check_model_dir(Path(path).expanduser(), "the case's `path`")
        return ResolvedModel(str(Path(path).expanduser()), "path")
    if env and os.environ.get(env):
        p = Path(os.environ[env]).expanduser()
        _check_model_dir(p, f"${env}")
        return ResolvedModel(str(p), "env")
    snap = _hf_cache_snapshot(hub_id) if hub_id else None
    if snap is not None:
        return ResolvedModel(str(snap), "hf-cache")
    raise ModelNotAvailable(
        f"weights of {hub_id} not found: set {env} to a local directory holding them "
        f"(config.json + safetensors), or put the model in the Hugging Face cache "
        f"(HF_HOME / HF_HUB_CACHE); nothing is downloaded at run time"
    )


def fallback_chat_template() -> str:
    """A plain-text chat template with generation markers, for base models that ship none."""
    return (
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}### Assistant:\n{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}\n"
        "{% else %}### {{ message['role'] | capitalize }}:\n{{ message['content'] }}\n{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
    )
