"""Each tiny family's chat template, written for the suite in that family's style: its role markers, its
system-prompt handling, its end-of-turn token, and `{% generation %}` markers around what an assistant
turn trains on (the end-of-turn token inside, so the model learns to stop), so that trl's
assistant_only_loss works on every family.

The tiny tokenizer is word-level over the synthetic data's words (suite/train/models.py): a family's
markers are added as special tokens, the role names it spells out in the text ("user", "model") as
ordinary words. The four architectures of 2023-2024 keep the suite's original template
(models.CHAT_TEMPLATE), so their models, data and curves are what they were.

What each style follows (the published templates' shape, not their every branch: tools, images and
reasoning traces are not in the tiny data):
- llama3: `<|start_header_id|>role<|end_header_id|>` headers, `<|eot_id|>` ends a turn, the
  `<|begin_of_text|>` prefix; a system message is its own turn.
- chatml (Qwen3, Qwen3-MoE, Qwen3.5, SmolLM3): `<|im_start|>role ... <|im_end|>`.
- gemma (Gemma 3 and 4): `<start_of_turn>user|model ... <end_of_turn>`, the assistant role is named
  "model", a system message is folded into the first user turn (Gemma has no system role).
- phi (Phi-4-mini): `<|system|>`, `<|user|>`, `<|assistant|>` markers, `<|end|>` ends a turn.
- harmony (gpt-oss): `<|start|>role<|message|> ... <|end|>`, the assistant's answer on the `final`
  channel (`<|start|>assistant<|channel|>final<|message|> ... <|return|>`).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatStyle:
    name: str
    template: str
    special: tuple[str, ...]  # markers, added as special tokens (never split, skipped when decoding)
    words: tuple[str, ...] = ()  # role names the template spells as text, added as ordinary tokens


LLAMA3 = ChatStyle(
    "llama3",
    "{{ bos_token }}<|begin_of_text|> "
    "{% for message in messages %}"
    "<|start_header_id|> {{ message['role'] }} <|end_header_id|> "
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }} <|eot_id|>{% endgeneration %} "
    "{% else %}{{ message['content'] }} <|eot_id|> {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|> assistant <|end_header_id|> {% endif %}",
    ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ("system", "user", "assistant"),
)

CHATML = ChatStyle(
    "chatml",
    "{% for message in messages %}"
    "<|im_start|> {{ message['role'] }} "
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }} <|im_end|>{% endgeneration %} "
    "{% else %}{{ message['content'] }} <|im_end|> {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}",
    ("<|im_start|>", "<|im_end|>"),
    ("system", "user", "assistant"),
)

GEMMA = ChatStyle(
    "gemma",
    "{{ bos_token }}"
    "{% set ns = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.system = message['content'] + ' ' %}"
    "{% elif message['role'] == 'assistant' %}<start_of_turn> model "
    "{% generation %}{{ message['content'] }} <end_of_turn>{% endgeneration %} "
    "{% else %}<start_of_turn> user {{ ns.system }}{{ message['content'] }} <end_of_turn> "
    "{% set ns.system = '' %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn> model {% endif %}",
    ("<start_of_turn>", "<end_of_turn>"),
    ("user", "model"),
)

PHI = ChatStyle(
    "phi",
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}<|assistant|> {% generation %}{{ message['content'] }} <|end|>{% endgeneration %} "
    "{% else %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}",
    ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
)

HARMONY = ChatStyle(
    "harmony",
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}<|start|> assistant <|channel|> final <|message|> "
    "{% generation %}{{ message['content'] }} <|return|>{% endgeneration %} "
    "{% else %}<|start|> {{ message['role'] }} <|message|> {{ message['content'] }} <|end|> {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start|> assistant <|channel|> final <|message|> {% endif %}",
    ("<|start|>", "<|message|>", "<|channel|>", "<|end|>", "<|return|>"),
    ("system", "developer", "user", "assistant", "final"),
)

# tiny architecture -> its family's style (the architectures not named keep the suite's original template)
STYLES: dict[str, ChatStyle] = {
    "llama3": LLAMA3, "qwen3": CHATML, "qwen3_moe": CHATML, "qwen3_5": CHATML, "smollm3": CHATML,
    "gemma3": GEMMA, "gemma4": GEMMA, "phi4_mini": PHI, "gpt_oss": HARMONY,
}
