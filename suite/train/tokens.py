"""Chat formats that add tokens (chatml): the tokenizer gets them as special tokens, the model's
embeddings and head are resized, and the adapter carries the new rows, either as whole matrices
(peft's modules_to_save) or as the rows alone (peft's trainable_token_indices).

The resize is reproducible: the new rows start as the mean of the old ones (transformers' default
samples them at random, so a reload could not rebuild the base the adapter was trained on). The
checkpoint is saved with save_embedding_layers=False, as peft's Trainable Tokens docs advise: with
the default ("auto"), a resized vocabulary makes peft save the embedding layers in full as well."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suite.matrix.spec import Case

from suite.matrix.axes import ADDED_TOKEN_FORMATS as FORMATS  # the matrix's formats that add tokens
ADDED = ("<|im_start|>", "<|im_end|>")
# ChatML, with {% generation %} markers so that assistant_only_loss works on it too
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }} <|im_end|>{% endgeneration %}"
    "{% else %}{{ message['content'] }} <|im_end|>{% endif %} {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)
EMBEDDING_MODULES = ("embed_tokens", "lm_head")


def chat_tokenizer(tokenizer) -> list[int]:
    """Add ChatML's tokens and template to the tokenizer (in place); the new tokens' ids."""
    tokenizer.add_special_tokens({"additional_special_tokens": list(ADDED)})
    tokenizer.chat_template = TEMPLATE
    return tokenizer.convert_tokens_to_ids(list(ADDED))


def resize(model, vocab: int) -> None:
    """Grow embeddings (and an untied head) to `vocab` rows, the new ones the mean of the old."""
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    if vocab <= old:  # a vocabulary padded beyond the tokenizer already has rows for the new ids
        return
    model.resize_token_embeddings(vocab, mean_resizing=False)
    with torch.no_grad():
        for layer in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}.values():
            layer.weight[old:] = layer.weight[:old].mean(dim=0, keepdim=True)


# Trainable tokens on the input embeddings only, peft's default target: trl 1.16's fused LM head reads
# lm_head.weight and .bias itself, and peft 0.21.2's TrainableTokensWrapper on lm_head has no .bias
# (AttributeError in the first step; tests/train/test_added_tokens.py keeps it as a strict xfail).
TRAINABLE_TOKEN_MODULES = ("embed_tokens",)


def lora_kwargs(case: Case, new_ids: list[int], modules: tuple[str, ...] = TRAINABLE_TOKEN_MODULES) -> dict[str, Any]:
    """What LoraConfig gets for the case's way of carrying the new rows."""
    if case.uses.whole_embeddings:
        return {"modules_to_save": list(EMBEDDING_MODULES)}
    return {"trainable_token_indices": {m: list(new_ids) for m in modules}}


def expected_tensors(case: Case) -> tuple[str, ...]:
    """Name fragments of the non-LoRA tensors the case's adapter checkpoint must hold."""
    if case.dataset not in FORMATS:
        return ()
    if case.uses.whole_embeddings:
        return tuple(f"{m}.weight" for m in EMBEDDING_MODULES)
    return ("trainable_tokens_delta",)
