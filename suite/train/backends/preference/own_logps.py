"""The suite's own sequence log-probabilities of a DPO batch (relation `dpo_logps_by_definition`): the model's
logits, log_softmax, the label tokens gathered, summed over the completion tokens only, where the completion is
what the suite's own tokenisation of the row says: the tokens of prompt + completion after the longest common
prefix with the prompt alone (the split trl documents; a chat template renders the prompt with its generation
prompt). Nothing of trl is called: not its collator, its slicing, its fused head or selective_log_softmax."""
from __future__ import annotations

from typing import Any


def _ids(tokenizer: Any, prompt: Any, completion: Any | None) -> list[int]:
    if isinstance(prompt, list):  # conversational rows: the chat template renders them (as text, then tokenised
        # without special tokens: the template writes its own)
        text = (tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False) if completion is None
                else tokenizer.apply_chat_template(prompt + completion, tokenize=False))
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt + (completion or ""), add_special_tokens=True)["input_ids"]


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def completion_starts(tokenizer: Any, rows: Any, max_length: int | None) -> dict[tuple[int, ...], int]:
    """{a sequence's tokens (as truncated to max_length): where its completion starts}, for prompt + chosen and
    prompt + rejected of every row (trl appends EOS to plain-text completions: the rows given are trl's text)."""
    table = {}
    for row in rows:
        prompt_ids = _ids(tokenizer, row["prompt"], None)
        for side in ("chosen", "rejected"):
            full = _ids(tokenizer, row["prompt"], row[side])
            table[tuple(full[:max_length] if max_length else full)] = _common(prompt_ids, full)
    return table


def own_sequence_logps(model: Any, input_ids: Any, attention_mask: Any, starts: dict[tuple[int, ...], int]
                       ) -> tuple[list[float | None], list[int]]:
    """Per row: the sum of log p(token | before) over its completion tokens (None: the row is no prompt +
    completion the suite tokenised), and its completion length."""
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits.float()
    logps = torch.log_softmax(logits, dim=-1)
    out, lengths = [], []
    for i in range(input_ids.size(0)):
        n = int(attention_mask[i].sum())
        seq = input_ids[i, :n].tolist()  # the batch is right-padded (checked: the attention mask is a prefix)
        start = starts.get(tuple(seq)) if bool(attention_mask[i, :n].all()) else None
        if start is None or start < 1:
            out.append(None)
            lengths.append(0)
            continue
        positions = torch.arange(start, n)
        out.append(float(logps[i, positions - 1, input_ids[i, positions]].sum()))
        lengths.append(n - start)
    return out, lengths


def dpo_own(trainer: Any, inputs: Any, record: dict) -> dict:
    """The first step's policy and reference log-probabilities by the suite's own forward (the policy in the
    mode it trained in, the reference as trl takes it: the disabled adapter, or trl's copy)."""
    import torch

    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    starts = completion_starts(trainer.processing_class, trainer.train_dataset, trainer.args.max_length)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad(), trainer.accelerator.autocast():  # the precision trl's forwards ran in (bf16 on a GPU)
        policy, lengths = own_sequence_logps(model, ids, mask, starts)
        if trainer.ref_model is not None:
            reference, _ = own_sequence_logps(trainer.ref_model, ids, mask, starts)
        elif hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                reference, _ = own_sequence_logps(model, ids, mask, starts)
        else:  # a full fine-tune whose reference trl precomputed and dropped: at step 1, before the first update,
            # the policy's weights are the reference's
            reference = policy
    return {"policy": policy, "reference": reference, "completion_tokens": lengths}
