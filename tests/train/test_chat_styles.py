"""Each tiny family's chat template (suite/train/chat.py), held to what assistant-only training and prompt
slicing need, by the suite's own oracle: the tokens the assistant mask covers are exactly each assistant
turn's words and the family's end-of-turn token, nothing of the prompt; a prompt rendered with the
generation prompt is a prefix of the whole conversation; every token is in the vocabulary."""
from __future__ import annotations

import dataclasses

import pytest

from suite.train import chat, data, models

SYSTEM = {"role": "system", "content": "count from one ."}


def conversation() -> list[dict]:
    msgs = data.generate("messages", 1, seed=3, turns=2)[0]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    return [SYSTEM, *msgs]


def end_of_turn(style: chat.ChatStyle) -> str:
    """The token that closes an assistant turn: the last of the markers inside the generation block."""
    block = style.template.split("{% generation %}")[1].split("{% endgeneration %}")[0]
    return next(t for t in reversed(style.special) if t in block)


def expected_mask(msgs: list[dict], eot: str) -> list[str]:
    """Our oracle: the assistant turns' words, each turn closed by its end-of-turn token."""
    out: list[str] = []
    for m in msgs:
        if m["role"] == "assistant":
            out += m["content"].split() + [eot]
    return out


def masked_tokens(tok, msgs: list[dict]) -> tuple[list[str], list[str]]:
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    tokens = tok.convert_ids_to_tokens(out["input_ids"])
    return tokens, [t for t, m in zip(tokens, out["assistant_masks"]) if m]


STYLES = sorted({s.name: s for s in chat.STYLES.values()}.items())


@pytest.mark.parametrize("name,style", STYLES, ids=[n for n, _ in STYLES])
def test_the_mask_covers_exactly_the_assistant_turns(name, style):
    tok = models.build_tokenizer(style)
    msgs = conversation()
    tokens, masked = masked_tokens(tok, msgs)
    assert tok.unk_token not in tokens, " ".join(tokens)
    assert masked == expected_mask(msgs, end_of_turn(style))
    for marker in style.special:  # each marker one token, never split into words
        assert tok.convert_ids_to_tokens(tok(marker, add_special_tokens=False)["input_ids"]) == [marker]


@pytest.mark.parametrize("name,style", STYLES, ids=[n for n, _ in STYLES])
def test_a_prompt_with_the_generation_prompt_is_a_prefix_of_the_conversation(name, style):
    tok = models.build_tokenizer(style)
    msgs = conversation()
    whole = tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
    prompt = tok.apply_chat_template(msgs[:-1], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert whole[:len(prompt)] == prompt
    rest = [t for t in tok.convert_ids_to_tokens(whole[len(prompt):]) if t not in style.special]
    assert rest == msgs[-1]["content"].split()


def test_the_system_prompt_goes_where_the_family_puts_it():
    """Gemma has no system role: the system text opens the first user turn; the others give it a turn."""
    msgs = conversation()
    gemma = models.build_tokenizer(chat.GEMMA).apply_chat_template(msgs, tokenize=False)
    assert "<start_of_turn> user count from one . " in gemma and "system" not in gemma
    llama = models.build_tokenizer(chat.LLAMA3).apply_chat_template(msgs, tokenize=False)
    assert "<|start_header_id|> system <|end_header_id|> count from one . <|eot_id|>" in llama


def test_a_template_that_leaves_the_end_of_turn_out_of_the_mask_fails_the_oracle():
    """Can fail: the generation block closed before the end-of-turn token (the model would never learn
    to stop) is caught by the same comparison."""
    broken = dataclasses.replace(chat.CHATML, template=chat.CHATML.template.replace(
        "{{ message['content'] }} <|im_end|>{% endgeneration %}", "{{ message['content'] }}{% endgeneration %} <|im_end|>"))
    assert broken.template != chat.CHATML.template
    msgs = conversation()
    _, masked = masked_tokens(models.build_tokenizer(broken), msgs)
    assert masked != expected_mask(msgs, "<|im_end|>")


def test_the_original_architectures_keep_the_original_tokenizer():
    """Their cached models, data and golden curves stay what they were (no style for them)."""
    for arch in ("llama", "qwen2", "mistral", "mixtral"):
        assert arch not in chat.STYLES
    tok = models.build_tokenizer()
    assert tok.convert_ids_to_tokens(list(range(7))) == models.SPECIAL_TOKENS
    assert tok.chat_template == models.CHAT_TEMPLATE


def test_every_family_has_a_style_and_a_config():
    from suite.matrix.axes import TINY_ARCHS

    # llama_sampling is the llama with sampling settings in its generation_config.json (its template the suite's)
    new = [a for a in TINY_ARCHS if a not in ("llama", "qwen2", "mistral", "mixtral", *models.TINY_GENERATION)]
    assert set(new) == set(chat.STYLES)
    assert set(TINY_ARCHS) == set(models.TINY_ARCHS)
