"""Every chat template a case uses (the original, the chatml format's added-token one, each family's style):
the prompt rendered with the generation prompt is a prefix of prompt + completion and of prompt + chosen /
rejected, as text and token ids, and the generation mask covers exactly the completion (suite/invariants/
templates.py). tests/train/test_chat_styles.py holds the styles' masks on multi-turn conversations."""
from __future__ import annotations

import dataclasses

import pytest

from suite.invariants import templates
from suite.train import chat, models

pytestmark = [pytest.mark.slow, pytest.mark.invariant]
NAMES = ["original", "chatml (added tokens)", "chatml", "gemma", "harmony", "llama3", "phi"]


def test_the_names_are_every_template_a_case_uses():
    assert sorted(templates.template_names()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_prompt_is_a_prefix_and_the_mask_is_the_completion(name, invariant):
    invariant.holds(templates.measure_template(name, templates.template_tokenizer(name)))


def _styled(style: chat.ChatStyle, old: str, new: str):
    assert old in style.template
    return models.build_tokenizer(dataclasses.replace(style, template=style.template.replace(old, new)))


def test_can_fail_when_the_generation_prompt_adds_a_newline(invariant):
    """ChatML's generation prompt with a trailing newline the conversation does not have: the text is no prefix."""
    tok = _styled(chat.CHATML, "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}",
                  "{% if add_generation_prompt %}<|im_start|> assistant \n{% endif %}")
    verdicts = templates.measure_template("chatml", tok)
    invariant.breaks(verdicts, "chat_template.prompt_prefix")
    assert "template 'chatml'" in verdicts[0].fails() and "the text differs" in verdicts[0].fails()


def test_can_fail_when_only_the_token_ids_differ(invariant):
    """The conversation glues the assistant's first word to its role ("assistantthree"), the generation prompt ends
    on the role: the text is a prefix, the token ids are not (the word-level tokenizer reads an unknown word)."""
    tok = models.build_tokenizer(chat.CHATML)
    tok.chat_template = tok.chat_template.replace("<|im_start|> {{ message['role'] }} ",
                                                  "<|im_start|> {{ message['role'] }}{% if message['role'] != 'assistant' %} {% endif %}")
    tok.chat_template = tok.chat_template.replace("<|im_start|> assistant {% endif %}", "<|im_start|> assistant{% endif %}")
    verdicts = templates.measure_template("chatml", tok)
    invariant.breaks(verdicts, "chat_template.prompt_prefix")
    assert "the token ids differ" in verdicts[0].fails()


def test_can_fail_when_the_generation_block_holds_the_role_header(invariant):
    """Phi's generation block opened before the assistant marker: the mask covers a prompt token; the prefix holds."""
    tok = _styled(chat.PHI, "<|assistant|> {% generation %}", "{% generation %}<|assistant|> ")
    verdicts = templates.measure_template("phi", tok)
    invariant.breaks(verdicts, "chat_template.completion_mask")
    assert verdicts[0].passed


@pytest.mark.tiny
@pytest.mark.lora
@pytest.mark.adapter
@pytest.mark.parametrize("name", sorted(templates.SLICED))
def test_trl_trains_on_exactly_the_completion(name, tmp_path, invariant):
    invariant.holds(templates.measure_trl_slicing(templates.SLICED[name], tmp_path))


@pytest.mark.tiny
@pytest.mark.lora
@pytest.mark.adapter
def test_can_fail_when_trl_unmasks_the_last_prompt_token(tmp_path, invariant):
    """A slicing one token short (the generation prompt's last token trained on), as an off-by-one would make it."""
    def one_short(trainer):
        def unmask(row):
            if "labels" not in row:  # trl 0.2x: the collator labels what the completion mask marks
                mask = list(row["completion_mask"])
                mask[mask.index(1) - 1] = 1
                return {"completion_mask": mask}
            labels = list(row["labels"])
            first = next(i for i, x in enumerate(labels) if x != -100)
            labels[first - 1] = row["input_ids"][first - 1]
            return {"labels": labels}

        trainer.train_dataset = trainer.train_dataset.map(unmask)

    invariant.breaks(templates.measure_trl_slicing("llama3", tmp_path, tamper=one_short), "chat_template.trl_slicing")
