"""What the child measures of a model besides its training: the reload probe's logits, parameter and
4-bit storage summaries, the inputs of the FLOPs count, memory peaks, the kernels that decided rounding."""
from __future__ import annotations

from pathlib import Path

from suite.train import models

# Fixed input for the reload check: the trained model in memory and the checkpoint read back
# must give the same logits on it.
PROBE_TEXTS = ["what colour is the cat ? the cat is", "count from two ? two three four"]
# The trained model's logits on them, beside the case's checkpoint (suite/tools/checkpoints.py).
PROBE_FILE = "probe-logits.safetensors"
SAVED_COPIES = "modules_to_save"  # peft's name fragment of the trainable copies of whole modules


def save_probe(logits, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"logits": logits.contiguous()}, str(path))


def load_probe(path: Path):
    from safetensors.torch import load_file

    return load_file(str(path))["logits"]


def ensure_chat_template(tokenizer) -> None:
    """Base 7B tokenizers ship no chat template; give them a plain one with generation markers."""
    if tokenizer.chat_template is None:
        tokenizer.chat_template = models.fallback_chat_template()


def probe_logits(model, tokenizer, device: str, train_mode: bool = False):
    """The model's logits at the probe's token positions, under no_grad; in eval mode unless
    train_mode (the mode, and so the kernels, that training used: bitsandbytes' 4-bit layers pick
    another GEMM for an eval-mode forward on an AVX512-BF16 CPU). The model is left in that mode."""
    import torch

    # Right padding, said explicitly (unsloth sets its tokenizers to pad on the left), and only
    # the positions that hold a token: logits at padding are not the model's answer to anything.
    tokenizer.padding_side = "right"
    enc = tokenizer(PROBE_TEXTS, return_tensors="pt", padding=True).to(model.device if device == "cuda" else "cpu")
    model.train(train_mode)
    with torch.no_grad():
        logits = model(**enc).logits.float().cpu()
    return logits[enc["attention_mask"].cpu().bool()]


def lora_dropout(model, tokenizer, device: str, eval_probe) -> dict | None:
    """LoRA dropout at work, after training (the lora_dropout check): the rates of the adapter's dropout
    modules; two more eval-mode forwards against the eval-mode probe taken before (dropout off: they
    agree); two training-mode forwards against each other (dropout on: they differ). None for a model
    without LoRA dropout modules (peft puts an Identity where the rate is 0). The model is left in eval mode."""
    import torch

    rates = [m.p for name, m in model.named_modules() if ".lora_dropout." in f".{name}." and isinstance(m, torch.nn.Dropout)]
    if not rates:
        return None
    repeats = [probe_logits(model, tokenizer, device) for _ in range(2)]
    train_a, train_b = (probe_logits(model, tokenizer, device, train_mode=True) for _ in range(2))
    model.eval()
    return {"rates": sorted(set(rates)), "modules": len(rates),
            "eval_repeat_diff": max((r - eval_probe).abs().max().item() for r in repeats),
            "train_pair_diff": (train_a - train_b).abs().max().item(),
            "compared": "max |logit difference| on the probe input: two eval-mode forwards vs the eval-mode probe, "
                        "and two training-mode forwards (no_grad) with each other"}


def generate(model, tokenizer, device: str, new_tokens: int) -> list[int]:
    """Greedy ids generated from the first probe text (eval mode, no sampling): what a user's
    inference code would print."""
    import torch

    enc = tokenizer(PROBE_TEXTS[:1], return_tensors="pt").to(model.device if device == "cuda" else "cpu")
    # only what every causal LM takes: older transformers refuse the token_type_ids a tokenizer may add
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask")}
    # A mixture of experts that outputs its router logits (the tiny Mixtral, for the load-balancing loss) generates
    # without them: generation never uses that loss, and transformers 5.0 to 5.x computed it with the whole
    # attention mask against one cached step's router logits and raised "The size of tensor a (2) must match the
    # size of tensor b (0)" (the release sweep, 2026-12-07, docs/floors.md); the generated ids are the same
    router = {"output_router_logits": False} if getattr(model.config, "output_router_logits", False) else {}
    model.eval()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                             else tokenizer.eos_token_id, **router)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def param_summary(model, is_adapter: bool) -> dict:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if hasattr(model, "get_nb_trainable_parameters"):  # counts 4-bit packed weights correctly
        n_trainable, n_total = model.get_nb_trainable_parameters()
    else:
        n_trainable = sum(_numel(p) for _, p in trainable)
        n_total = sum(_numel(p) for p in model.parameters())
    out = {
        "trainable": int(n_trainable), "total": int(n_total),
        "trainable_bytes": int(sum(_numel(p) * p.element_size() for _, p in trainable)),
        "trainable_dtypes": sorted({str(p.dtype).replace("torch.", "") for _, p in trainable}),
        "trainable_tensors": len(trainable),
    }
    if is_adapter and case_targets_parameters(model):
        out["parameter_adapters"] = parameter_adapters(model)
    if not is_adapter:
        sd = saved_layout(model, model.state_dict())
        tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
        keys = [k for k in sd if k not in tied]
        out["state_dict_keys"] = keys
        whole = {n: _numel(p) for n, p in model.named_parameters()}  # ZeRO-3's state dict holds empty partitions
        out["state_dict_bytes"] = int(sum(whole.get(k, sd[k].numel()) * sd[k].element_size() for k in keys))
    return out


def _numel(param) -> int:
    """A parameter's whole size: under DeepSpeed ZeRO-3 a rank holds an empty partition and the size is ds_numel."""
    return int(getattr(param, "ds_numel", None) or param.numel())


def case_targets_parameters(model) -> bool:
    """Whether the model's peft config wraps parameters (target_parameters)."""
    configs = getattr(model, "peft_config", None) or {}
    return any(getattr(c, "target_parameters", None) for c in configs.values())


def saved_layout(model, state_dict: dict) -> dict:
    """The state dict under the names save_pretrained writes: transformers 5 reverts its load-time
    conversions on saving (a Mixtral's fused 3-D experts go back to one w1/w2/w3 matrix per expert
    under block_sparse_moe), so a full checkpoint holds those names, not the module's."""
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # transformers 4 saves the module's own names
        return state_dict
    return revert_weight_conversion(model, dict(state_dict))


def quantized_summary(model) -> dict | None:
    """Storage of the 4-bit weights, in the QLoRA paper's accounting (sec. 3: 4.127 bits/param for
    NF4 with double quantization): packed 4-bit weights plus block constants (8-bit absmax per 64
    weights, fp32 absmax of those per 256), per logical parameter. The per-tensor constants (the
    NF4 and dynamic code tables, the offset) are counted apart: they vanish on 7B layers."""
    params = packed = constants = per_tensor = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        qs = getattr(weight, "quant_state", None)
        if qs is None or not hasattr(qs, "absmax"):
            continue
        params += int(qs.shape.numel())
        packed += weight.numel() * weight.element_size()
        constants += qs.absmax.numel() * qs.absmax.element_size()
        per_tensor += qs.code.numel() * qs.code.element_size()
        if getattr(qs, "nested", False):
            constants += qs.state2.absmax.numel() * qs.state2.absmax.element_size()
            per_tensor += qs.state2.code.numel() * qs.state2.code.element_size() + 4  # + the fp32 offset
    if not params:
        return None
    return {"params": params, "packed_bytes": packed, "block_constant_bytes": constants,
            "per_tensor_bytes": per_tensor, "bits_per_param": (packed + constants) * 8 / params,
            "unquantized": unquantized_weights(model)}


def unquantized_weights(model) -> dict[str, int]:
    """The base's floating-point weights of two or more dimensions that a 4-bit load left as they were,
    by name within a layer ({name: parameters}, summed over the layers); the embeddings, the head and the adapter's
    own tensors apart. On a mixture of experts bitsandbytes quantizes the nn.Linear layers only: the
    fused 3-D experts and the router stay in the compute dtype."""
    import re

    skip = {id(m.weight) for m in (model.get_input_embeddings(), model.get_output_embeddings())
            if m is not None and getattr(m, "weight", None) is not None}
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        if p.ndim < 2 or not p.is_floating_point() or id(p) in skip or "lora_" in name or SAVED_COPIES in name:
            continue
        key = re.sub(r"^.*?layers\.\d+\.", "", name.replace(".base_layer", ""))  # per layer, not per index
        out[key] = out.get(key, 0) + p.numel()
    return out


def parameter_adapters(model) -> list[dict]:
    """peft's adapters of parameters (target_parameters) in a model: per wrapped parameter its name and
    shape, and the names its lora_A / lora_B are saved under (the module's path, adapter name dropped)."""
    out = []
    for path, module in model.named_modules():
        name = getattr(module, "parameter_name", None)
        if not isinstance(name, str) or not hasattr(module, "lora_A") or not hasattr(module, "get_param"):
            continue
        for adapter, lora_a in module.lora_A.items():
            lora_b = module.lora_B[adapter]
            owner = path.replace(".base_layer", "").removeprefix("base_model.model.")
            out.append({"parameter": f"{owner}.{name}", "shape": list(module.get_param().shape),
                        "lora_A": f"{path}.lora_A.weight", "lora_A_shape": list(lora_a.weight.shape),
                        "lora_B": f"{path}.lora_B.weight", "lora_B_shape": list(lora_b.weight.shape)})
    return out

def sdpa_backends() -> dict[str, bool]:
    """Which kernels torch's SDPA was allowed to pick (the flash one only for fp16/bf16 without an
    arbitrary mask). What it did pick is in `attention_ops`."""
    import torch

    b = torch.backends.cuda
    return {"flash": b.flash_sdp_enabled(), "mem_efficient": b.mem_efficient_sdp_enabled(),
            "math": b.math_sdp_enabled(), "cudnn": getattr(b, "cudnn_sdp_enabled", lambda: False)()}


def memory(device: str, start_rss: int, nvml) -> dict:
    import torch

    from suite.train.measure import peak_rss_bytes

    mem = {"device": device, "peak_rss_bytes": peak_rss_bytes(), "start_rss_bytes": start_rss}
    if device == "cuda":
        mem["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
        mem["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved()
        if nvml.peak_bytes is not None:
            mem["nvml_peak_used_bytes"] = nvml.peak_bytes
    return mem


def flops_info(model, params: dict, counts: list[tuple[int, int, int]], is_adapter: bool) -> dict:
    """What the parent needs to turn tokens/s into model FLOP/s (suite.judge.hardware.flops_per_token)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    emb = model.get_input_embeddings()
    processed = sum(c[0] for c in counts)
    sequences = sum(c[2] for c in counts)
    return {"n_layers": getattr(cfg, "num_hidden_layers", 0), "hidden": getattr(cfg, "hidden_size", 0),
            "embedding_params": 0 if tied or emb is None else int(emb.weight.numel()),
            "total_params": params["total"], "trainable_params": params["trainable"], "full": not is_adapter,
            "mean_seq_len": processed / sequences if sequences else 0.0}


def kernel_profile() -> dict:
    """What decided this process's floating-point rounding (suite/kernelclass.py): torch's vector
    ISA and the bitsandbytes backend on a CPU (its CPU library has AVX512-BF16 paths for 4-bit and
    loads a 4-bit GEMM from the optional `kernels` package); on a GPU its compute capability and TF32."""
    import importlib.util

    import torch

    from suite.machine import torch_cpu_capability

    out: dict = {"torch_cpu_capability": torch_cpu_capability()}
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        out["cuda_capability"] = f"{major}.{minor}"
        out["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    try:
        from bitsandbytes import cextension, functional

        lib = getattr(getattr(cextension, "lib", None), "_lib", None)
        out["bitsandbytes"] = {"backend": getattr(cextension, "BNB_BACKEND", None),
                               "library": Path(getattr(lib, "_name", "") or "").name or None,
                               "avx512bf16": bool(functional.has_avx512bf16())
                               if hasattr(functional, "has_avx512bf16") else None,
                               "kernels_package": importlib.util.find_spec("kernels") is not None}
    except Exception:  # not installed, or an older release without these names
        out["bitsandbytes"] = None
    return out
