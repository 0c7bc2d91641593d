"""The options a case sets really act on its run (the check `options_exercised`), so that the by-definition relations
(relations.py) judge them and not a run where they change nothing: `mask_truncated_completions` masks some truncated
completion out (a recorded micro-batch has a completion whose mask, by definition, is empty); `num_iterations` > 1
moves the policy away from the one that sampled (some recorded micro-batch's log-probabilities differ from the
sampling policy's) and, for a loss type that clips the importance ratio, takes some ratio past its clip range;
`reward_clip_range` clips some sampled reward. Each measured on what the recorder kept (lossrecord.py), by the suite's
own arithmetic; an option the case leaves at trl's default asks nothing."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suite.checkresult import Bounds, CheckResult
from suite.train.backends.base import TrainerCheck

if TYPE_CHECKING:
    from suite.matrix.spec import Case
    from suite.train.payload import Payload

# relation -> the library functions it must not call: none, it computes no expected value (counts of what the
# recorder kept, by the suite's own arithmetic)
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {"options_exercised": ()}

MOVED = 1e-6  # a log-ratio beyond float rounding of the suite's own forward (the relations' bounds are 1e-5)
# the loss types whose importance ratio is clipped to [1 - epsilon, 1 + epsilon_high] (PPO's surrogate; RLOO's on the
# sequence ratio), and cispo's, capped at epsilon_high; sapo's soft gate and vespo's weight clip nothing
CLIPPED = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")
CAPPED = ("cispo",)


def asks(config: dict) -> bool:
    """Whether a run's config sets an option this check is for."""
    return bool(config.get("mask_truncated_completions") or int(config.get("num_iterations") or 1) > 1
                or config.get("reward_clip_range"))


def _ratios(record: dict, sequence: bool) -> list[float]:
    """The importance ratios over the loss's tokens (sequence: one per completion, on its summed log-ratio, RLOO's)."""
    rows = zip(record["logps"], record["old"], record["mask"])
    if sequence:
        return [math.exp(sum((a - b) * m for a, b, m in zip(lp, old, mask))) for lp, old, mask in rows if sum(mask)]
    return [math.exp(a - b) for lp, old, mask in rows for a, b, m in zip(lp, old, mask) if m]


def _iterations(records: list[dict], config: dict, loss_type: str | None) -> list[tuple[str, bool]]:
    """loss_type None: RLOO's loss, clipped on the sequence ratio."""
    ratios = [r for rec in records for r in _ratios(rec, loss_type is None)]
    moved = max((abs(math.log(r)) for r in ratios), default=0.0)
    out = [(f"num_iterations {config['num_iterations']}: largest |log ratio| {moved:.3g} over {len(ratios)} "
            f"{'completions' if loss_type is None else 'tokens'} of {len(records)} recorded micro-batches "
            f"({'>' if moved > MOVED else '<='} {MOVED:g})", moved > MOVED)]
    eps = float(config.get("epsilon") or 0.2)
    high = float(config["epsilon_high"]) if config.get("epsilon_high") is not None else eps
    if loss_type is None or loss_type in CLIPPED:
        clipped = sum(not 1 - eps <= r <= 1 + high for r in ratios)
        out.append((f"{clipped} ratios outside the clip range [{1 - eps:g}, {1 + high:g}]", clipped > 0))
    elif loss_type in CAPPED:
        clipped = sum(r > high for r in ratios)
        out.append((f"{clipped} ratios above cispo's cap {high:g}", clipped > 0))
    return out


def exercised(records: list[dict], config: dict, curve: list[dict], loss_type: str | None) -> list[tuple[str, bool]]:
    """What each option the config sets did on the run: (what was measured, whether it acted); loss_type None:
    RLOO's loss."""
    out = []
    if config.get("mask_truncated_completions"):
        rows = [m for rec in records for m in rec["mask"]]
        cut = sum(not any(m) for m in rows)
        out.append((f"mask_truncated_completions: {cut} of {len(rows)} recorded completions truncated and masked out",
                    cut > 0))
    if int(config.get("num_iterations") or 1) > 1:
        out += _iterations(records, config, loss_type)
    if config.get("reward_clip_range"):
        lo, hi = config["reward_clip_range"]
        rewards = [r for p in curve for r in p.get("sampled/rewards", [])]
        out_of = sum(not lo <= r <= hi for r in rewards)
        out.append((f"reward_clip_range [{lo:g}, {hi:g}]: {out_of} of {len(rewards)} sampled rewards clipped",
                     out_of > 0))
    return out


@dataclass(frozen=True)
class OptionsExercised:
    """Every option the case sets acted on its run (exercised()); a record without the loss's micro-batches fails."""

    name: str = "options_exercised"

    def evaluate(self, case_id: str, records: list[dict], config: dict, curve: list[dict],
                 loss_type: str | None) -> CheckResult:
        usable = [r for r in records if "error" not in r]
        if not usable or not config:
            return CheckResult(self.name, False, f"{case_id}: no micro-batch of the loss or no config recorded")
        found = exercised(usable, config, curve, loss_type)
        idle = [what for what, acted in found if not acted]
        msg = f"{case_id}: " + "; ".join(what for what, _ in found)
        if idle:
            msg += f": {len(idle)} option(s) changed nothing here, so no relation judged them"
        return CheckResult(self.name, not idle, msg, value=float(len(idle)), bound=0.0)


def options_check(sequence: bool = False) -> TrainerCheck:
    """The check for GRPO (the loss type its config records) or, sequence, RLOO (its loss on the sequence ratio)."""
    def check(case: Case, payload: Payload, bounds: Bounds | None, inv: Any) -> CheckResult:
        sampling = (payload.resolved or {}).get("sampling") or {}
        config = sampling.get("config") or {}
        return OptionsExercised().evaluate(case.id, sampling.get("loss_records") or [], config, payload.loss_curve,
                                           None if sequence else str(config.get("loss_type")))
    return TrainerCheck("options_exercised", check)
