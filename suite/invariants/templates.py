"""Every chat template a case uses renders a prompt that is a prefix of the prompt with its completion, and marks
exactly the completion as what an assistant turn trains on.

trl slices a conversational example into prompt and completion by rendering the prompt with the generation
prompt and the whole conversation, and taking the second's tokens past the first's (SFT's prompt-completion
data, DPO's chosen and rejected): where the prompt is not a prefix, as strings and as token ids, that slicing
drops or shifts tokens. The completion the suite expects is computed by its own code from the rendered parts
(the whole conversation's ids past the prompt's); the template's `{% generation %}` markers (what
assistant_only_loss trains on, transformers' return_assistant_tokens_mask) must cover exactly those ids.
The templates: the suite's original (models.CHAT_TEMPLATE), the chatml format's added-token template
(tokens.TEMPLATE) and each family's style (chat.STYLES); the conversations: the conversational data formats'
rows (SFT's conversational prompt-completion, DPO's conversational preference pairs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from suite.invariants.relations import Verdict, count

# No library function computes what these expect: they compare the template's renderings with each other.
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "chat_template.prompt_prefix": ("trl.data_utils.apply_chat_template", "trl.data_utils.maybe_apply_chat_template"),
    "chat_template.completion_mask": ("trl.data_utils.apply_chat_template", "trl.data_utils.maybe_apply_chat_template"),
    "chat_template.trl_slicing": ("trl.data_utils.apply_chat_template", "trl.data_utils.maybe_apply_chat_template"),
}
# an architecture per template that SFTTrainer slices (the chatml format's is messages data, sliced by no one)
SLICED = {"original": "llama", "llama3": "llama3", "chatml": "qwen3", "gemma": "gemma3", "phi": "phi4_mini",
          "harmony": "gpt_oss"}
ROWS = 6  # conversations of each data format, each a prompt and one or two completions


ORIGINAL, ADDED_TOKENS = "original", "chatml (added tokens)"


def template_names() -> list[str]:
    """Every template a case renders: the suite's original, the chatml format's, each family's style."""
    from suite.train import chat

    return [ORIGINAL, ADDED_TOKENS, *sorted({s.name for s in chat.STYLES.values()})]


def template_tokenizer(name: str) -> Any:
    """A tokenizer holding the template `name` (template_names)."""
    from suite.train import chat, models, tokens

    styles = {s.name: s for s in chat.STYLES.values()}
    if name in styles:
        return models.build_tokenizer(styles[name])
    tokenizer = models.build_tokenizer()
    if name == ADDED_TOKENS:
        tokens.chat_tokenizer(tokenizer)
    elif name != ORIGINAL:
        raise ValueError(f"unknown chat template {name!r}; known: {', '.join(template_names())}")
    return tokenizer


def conversations() -> list[tuple[str, list[dict], list[dict]]]:
    """(what, prompt messages, completion messages) from the conversational formats' own rows."""
    from suite.train import data

    out = []
    for i, row in enumerate(data.generate("conversational_pc", ROWS, seed=0)):
        out.append((f"conversational_pc row {i}", row["prompt"], row["completion"]))
    for i, row in enumerate(data.generate("conversational_preference", ROWS, seed=0)):
        out += [(f"conversational_preference row {i} chosen", row["prompt"], row["chosen"]),
                (f"conversational_preference row {i} rejected", row["prompt"], row["rejected"])]
    return out


def measure_template(name: str, tokenizer: Any) -> list[Verdict]:
    """Both relations over every conversation for one template, the family named in each message."""
    not_prefix, wrong_mask = [], []
    for what, prompt, completion in conversations():
        problem = prefix_problem(tokenizer, prompt, completion)
        if problem:
            not_prefix.append(f"{what}: {problem}")
            continue  # no completion to mask where the slicing itself fails
        problem = mask_problem(tokenizer, prompt, completion)
        if problem:
            wrong_mask.append(f"{what}: {problem}")
    what = f"template {name!r}, {len(conversations())} conversations"
    return [count("chat_template.prompt_prefix", not_prefix, what),
            count("chat_template.completion_mask", wrong_mask, what)]


def prefix_problem(tokenizer: Any, prompt: list[dict], completion: list[dict]) -> str | None:
    """Why the prompt rendered with the generation prompt is not a prefix of prompt + completion (text, then ids)."""
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    whole_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    if not whole_text.startswith(text):
        at = next((i for i, (a, b) in enumerate(zip(text, whole_text)) if a != b), min(len(text), len(whole_text)))
        return f"the text differs at character {at}: prompt {text[at:at + 12]!r}, conversation {whole_text[at:at + 12]!r}"
    ids, whole = _ids(tokenizer, prompt, True), _ids(tokenizer, prompt + completion, False)
    if whole[:len(ids)] != ids:
        at = next((i for i, (a, b) in enumerate(zip(ids, whole)) if a != b), min(len(ids), len(whole)))
        return (f"the token ids differ at position {at}: prompt {tokenizer.convert_ids_to_tokens(ids[at:at + 3])}, "
                f"conversation {tokenizer.convert_ids_to_tokens(whole[at:at + 3])}")
    return None


def mask_problem(tokenizer: Any, prompt: list[dict], completion: list[dict]) -> str | None:
    """Where the template's generation mask is not exactly the completion: the ids past the prompt's."""
    start = len(_ids(tokenizer, prompt, True))
    out = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    mask, n = list(out["assistant_masks"]), len(out["input_ids"])
    own = [0] * start + [1] * (n - start)
    if mask == own:
        return None
    wrong = [i for i in range(n) if mask[i] != own[i]]
    tokens = tokenizer.convert_ids_to_tokens([out["input_ids"][i] for i in wrong[:3]])
    return (f"{len(wrong)} of {n} tokens masked otherwise than the completion (positions {wrong[:3]}: {tokens}; "
            f"the completion starts at {start})")


def _ids(tokenizer: Any, messages: list[dict], generation_prompt: bool) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                              return_dict=True)["input_ids"])


def measure_trl_slicing(arch: str, out: Path, *, tamper: Callable[[Any], None] | None = None) -> Verdict:
    """SFTTrainer's prepared labels on conversational prompt-completion rows (the arch's template): the tokens
    they leave unmasked are exactly the completion, the conversation's ids past the prompt's as the suite
    computes them from the template's renderings. `tamper(trainer)` may change the prepared dataset."""
    from suite.invariants import harness as h

    case = h.tiny_case("lora", dataset="conversational_pc", arch=arch, num_samples=8)
    with h.quiet():
        built = h.build_trainer(case, out)
    if tamper is not None:
        tamper(built.trainer)
    tokenizer, wrong = built.tokenizer, []
    for i, (row, prepared) in enumerate(zip(h.rows_for(case), built.trainer.train_dataset)):
        start = len(_ids(tokenizer, row["prompt"], True))
        whole = _ids(tokenizer, row["prompt"] + row["completion"], False)
        own = [0] * start + [1] * (len(whole) - start)
        # what training sees of the row: its prepared ids through the trainer's own collator (trl 1.x prepares
        # the labels in the dataset, trl 0.2x a completion_mask its collator turns into labels)
        fed = built.trainer.data_collator([prepared])
        ids, labels = fed["input_ids"][0].tolist(), fed["labels"][0].tolist()
        trl = [int(label != -100) for label in labels]
        if ids != whole or trl != own:
            wrong.append(f"row {i}: trl trains on {sum(trl)} of {len(trl)} tokens, the completion is the last "
                         f"{len(whole) - start} of {len(whole)}")
    return count("chat_template.trl_slicing", wrong, f"{case.id} ({arch}'s template), {len(built.trainer.train_dataset)} rows")
