"""What the loss relation needs, recorded in the child by the suite's own forward (no trl code): at each generation,
the sampling policy's per-token log-probabilities of the completions (the "old" ones), the reference's where there
is a KL term (trl's reference copy, or the policy with its adapter disabled), the completion mask by definition
and each completion's KL (RLOO folds beta x it into the reward); at a few micro-batches (the first two, a middle
one, the last), the policy's log-probabilities as the loss saw them, the advantages and mask trl handed its loss,
and the loss trl returned. Kept small: 4 micro-batches of a tiny run are a few thousand numbers.

The forward is the model's plain one (trl's fused LM head off): logits / temperature -> log_softmax -> the sampled
token's entry; it runs without gradients and draws no random numbers (the generating trainers train no dropout)."""
from __future__ import annotations

from typing import Any

from suite.train.backends.online import definitions

CONFIG_FIELDS = (  # the config fields the relations read (the trainer's args: what the user declared)
    "loss_type", "beta", "epsilon", "epsilon_high", "num_iterations", "steps_per_generation",
    "gradient_accumulation_steps", "max_completion_length", "importance_sampling_level", "scale_rewards",
    "sapo_temperature_pos", "sapo_temperature_neg", "vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg",
    "vespo_lambda_neg", "mask_truncated_completions", "normalize_advantages", "reward_clip_range", "temperature",
    # settings no definition here covers: a relation refuses to judge a run that sets them
    "delta", "top_entropy_quantile", "entropy_coef", "use_adaptive_entropy", "off_policy_mask_threshold",
    "use_bias_correction_kl", "use_vllm", "multi_objective_aggregation")


def own_logps(model: Any, prompt_ids: Any, prompt_mask: Any, completion_ids: Any, completion_mask: Any,
              temperature: float) -> Any:
    """Per-token log-probabilities of the completion tokens: the suite's own forward, rows x completion tokens."""
    import torch

    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention = torch.cat([prompt_mask, completion_mask.to(prompt_mask.dtype)], dim=1)
    n = completion_ids.size(1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention).logits[:, -n - 1:-1].double() / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


def _short(rows: list) -> list:
    """Log-probabilities to 10 significant digits (the record stays small; the relations' bounds are 1e-5)."""
    return [_short(x) if isinstance(x, list) else float(f"{x:.10g}") for x in rows]


def config_of(trainer: Any) -> dict:
    """The config fields the relations read, as JSON values."""
    args = trainer.args
    out = {}
    for k in (k for k in CONFIG_FIELDS if hasattr(args, k)):  # RLOOConfig has fewer fields than GRPOConfig
        v = getattr(args, k)
        out[k] = list(v) if isinstance(v, (tuple, list)) else v
    return out


class LossRecorder:
    """Held by the online SampleRecorder: `generated(out)` at each training generation, `wrap()` around the
    trainer's compute_loss (installed after any known fault: it records what the loss returned)."""

    def __init__(self, trainer: Any, eos: list[int]) -> None:
        self.trainer, self.eos = trainer, eos
        self.pad = getattr(trainer.processing_class, "pad_token_id", None)
        self.rows: dict[tuple, tuple] = {}  # (prompt, completion) -> old, ref, mask, the generation's tokens
        self.records: list[dict] = []
        self.calls = 0
        args = trainer.args
        total = args.max_steps * args.gradient_accumulation_steps
        self.picked = {0, 1, total // 2, total - 1}
        inner = trainer.compute_loss

        def compute_loss(model, inputs, *a, **kw):
            loss = inner(model, inputs, *a, **kw)
            if model.training and self.calls in self.picked:
                self.records.append(self._record(model, inputs, loss))
            self.calls += model.training
            return loss

        trainer.compute_loss = compute_loss

    def _key(self, prompt_ids: Any, prompt_mask: Any, completion_ids: Any, i: int) -> tuple:
        return (tuple(prompt_ids[i][prompt_mask[i].bool()].tolist()), tuple(completion_ids[i].tolist()))

    def _reference(self) -> Any:
        """The reference model: trl's copy, or (an adapter) the policy with its adapter disabled."""
        import contextlib

        t = self.trainer
        if getattr(t, "ref_model", None) is not None:
            return contextlib.nullcontext(t.ref_model)
        model = t.accelerator.unwrap_model(t.model)

        @contextlib.contextmanager
        def disabled():
            with model.disable_adapter():
                yield t.model
        return disabled()

    def generated(self, out: dict) -> list[float] | None:
        """Record the generation's rows; return each completion's KL to the reference (None without a KL term)."""
        import torch

        t, args = self.trainer, self.trainer.args
        cids = out["completion_ids"]
        mask = torch.tensor([definitions.completion_mask(row, self.eos, self.pad, bool(
            getattr(args, "mask_truncated_completions", False))) for row in cids.tolist()])
        old = own_logps(t.model, out["prompt_ids"], out["prompt_mask"], cids, mask, args.temperature)
        ref = None
        if args.beta:
            with self._reference() as reference:
                ref = own_logps(reference, out["prompt_ids"], out["prompt_mask"], cids, mask, args.temperature)
        tokens = int(mask.sum())
        for i in range(cids.size(0)):
            self.rows[self._key(out["prompt_ids"], out["prompt_mask"], cids, i)] = (
                old[i].tolist(), None if ref is None else ref[i].tolist(), mask[i].tolist(), tokens)
        if ref is None:
            return None
        return [definitions.sequence_kl(o, r, m) for o, r, m in zip(old.tolist(), ref.tolist(), mask.tolist())]

    def _record(self, model: Any, inputs: dict, loss: Any) -> dict:
        import torch

        t = self.trainer
        pids, pmask, cids = inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"]
        rows = [self.rows.get(self._key(pids, pmask, cids, i)) for i in range(cids.size(0))]
        if any(r is None for r in rows):
            return {"step": t.state.global_step + 1, "micro_batch": self.calls, "error":
                    "a row of the micro-batch was not among the generated ones"}
        mask = [r[2] for r in rows]
        now = own_logps(model, pids, pmask, cids, torch.tensor(mask), t.args.temperature)
        trl_old = inputs.get("old_per_token_logps", inputs.get("old_logps"))
        adv = inputs["advantages"]
        trl_mask = inputs["completion_mask"].tolist()
        # where trl's mask differs, the policy's log-probabilities under it too (the mask is the forward's attention
        # mask): what the cause "truncated completions counted" is recomputed with
        trl_now = None if trl_mask == mask else _short(own_logps(model, pids, pmask, cids, inputs["completion_mask"],
                                                                 t.args.temperature).tolist())
        return {"step": t.state.global_step + 1, "micro_batch": self.calls, "loss": float(loss.detach()),
                "logps": _short(now.tolist()), "old": _short([r[0] for r in rows]),
                "ref": None if rows[0][1] is None else _short([r[1] for r in rows]), "mask": mask,
                "generation_tokens": rows[0][3], "advantages": adv.reshape(adv.size(0), -1)[:, 0].tolist(),
                "trl_mask": trl_mask if trl_mask != mask else None,  # kept where it differs (a cause to name)
                "trl_old": None if trl_old is None else _short(trl_old.tolist()),
                "trl_items": float(inputs["num_items_in_batch"]) if "num_items_in_batch" in inputs else None,
                "trl_logps": trl_now}
