"""Learnable synthetic data sets in every format trl's SFTTrainer, DPOTrainer, KTOTrainer and RewardTrainer accept.

The task is deterministic and small-vocabulary (colour/animal facts and counting), so a
tiny model's loss falls within a few dozen steps and any regression that breaks learning
shows up as a flat curve.
"""
from __future__ import annotations

import random

# The formats are the matrix's vocabulary; this module generates each. chatml: the messages rows,
# rendered by a ChatML template whose <|im_start|> and <|im_end|> are tokens the tokenizer does not
# have: they are added, the embeddings resized (suite/train/tokens.py). The preference formats
# (prompt, chosen, rejected) are trl's standard and conversational ones; the unpaired one (prompt,
# completion, label) is KTO's: each row the right answer (desirable) or a wrong one, about half each. The
# prompt-only one is GRPO's and RLOO's: the prompts alone; the trainers sample the completions.
from suite.matrix.axes import FORMAT, FORMATS

COLOURS = ["red", "blue", "green", "yellow", "black", "white", "pink", "brown"]
ANIMALS = ["cat", "dog", "fox", "owl", "cow", "pig", "hen", "bee", "ant", "elk", "yak", "emu"]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# Fixed facts: the model must memorise a mapping, which a short run can do.
FACTS = {animal: COLOURS[(i * 3) % len(COLOURS)] for i, animal in enumerate(ANIMALS)}
TEMPLATE_WORDS = ["what", "colour", "is", "the", "count", "from", "it", "next", "after", "?", "."]


def vocabulary() -> list[str]:
    """Every word the generated data can contain (the tiny tokenizer's word list)."""
    return sorted(set(COLOURS + ANIMALS + NUMBERS + TEMPLATE_WORDS))


def _example(rng: random.Random) -> tuple[str, str]:
    """One (prompt, completion) pair; completions follow from prompts deterministically."""
    if rng.random() < 0.5:
        animal = rng.choice(ANIMALS)
        return f"what colour is the {animal} ?", f"the {animal} is {FACTS[animal]} ."
    start = rng.randrange(0, 5)
    length = rng.randrange(3, 6)
    seq = " ".join(NUMBERS[start : start + length])
    return f"count from {NUMBERS[start]} ?", f"{seq} ."


def _rejected(completion: str, rng: random.Random) -> str:
    """A wrong answer of the same shape: another colour, or a count that skips a number."""
    words = completion.split()
    if words[-2] in COLOURS:  # "the <animal> is <colour> ."
        words[-2] = rng.choice([c for c in COLOURS if c != words[-2]])
    else:  # "<n> <n+1> ... ." -> one number left out
        del words[rng.randrange(1, len(words) - 1)]
    return " ".join(words)


def generate(fmt: str, n: int, seed: int = 0, turns: int = 1) -> list[dict]:
    """Rows of the data set in the given trl format; `turns` question/answer pairs per row make
    longer sequences (multi-turn conversations for the conversational formats); a format with
    `varied_turns` (long_messages) draws each row's number of turns instead."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}")
    if turns < 1:
        raise ValueError(f"turns must be at least 1, got {turns}")
    shape = FORMAT[fmt]
    rng = random.Random(seed)
    wrong = random.Random(seed + 1)  # rejected answers: the other formats' rows stay as they were
    rows = []
    for _ in range(n):
        # long_messages: each row its own number of turns, so that lengths straddle max_length
        row_turns = rng.randint(1, shape.varied_turns) if shape.varied_turns else turns
        pairs = [_example(rng) for _ in range(row_turns)]
        context = " ".join(f"{p} {c}" for p, c in pairs[:-1])
        prompt, completion = pairs[-1]
        if shape.plain:
            rows.append({"text": " ".join(f"{p} {c}" for p, c in pairs)})
        elif shape.conversational and not (shape.prompt or shape.preference):  # messages, chatml
            rows.append({"messages": [m for p, c in pairs for m in (
                {"role": "user", "content": p}, {"role": "assistant", "content": c})]})
        elif shape.preference:
            rejected = _rejected(completion, wrong)
            if not shape.conversational:
                rows.append({"prompt": (context + " " if context else "") + prompt + " ", "chosen": completion,
                             "rejected": rejected})
            else:
                history = [m for p, c in pairs[:-1] for m in (
                    {"role": "user", "content": p}, {"role": "assistant", "content": c})]
                rows.append({"prompt": history + [{"role": "user", "content": prompt}],
                             "chosen": [{"role": "assistant", "content": completion}],
                             "rejected": [{"role": "assistant", "content": rejected}]})
        elif shape.unpaired:
            desirable = wrong.random() < 0.5
            rows.append({"prompt": (context + " " if context else "") + prompt + " ",
                         "completion": completion if desirable else _rejected(completion, wrong), "label": desirable})
        elif shape.generates:
            rows.append({"prompt": (context + " " if context else "") + prompt + " "})
        elif not shape.conversational:  # prompt_completion
            rows.append({"prompt": (context + " " if context else "") + prompt + " ", "completion": completion})
        else:
            history = [m for p, c in pairs[:-1] for m in (
                {"role": "user", "content": p}, {"role": "assistant", "content": c})]
            rows.append({"prompt": history + [{"role": "user", "content": prompt}],
                         "completion": [{"role": "assistant", "content": completion}]})
    return rows
