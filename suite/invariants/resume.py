"""Resume: a run stopped at a checkpoint and resumed continues on the trajectory of the uninterrupted run.

`measure_resume` is the first relation (in this process, SFT full and LoRA, N steps then N more).
`measure_resume_elsewhere` is what a preempted nightly job does: the uninterrupted run trains here, saving a
checkpoint at `stop`; a fresh interpreter (suite/invariants/resume_leg.py) gets the checkpoint folder only and
resumes it to the end; per-step losses, learning rates, the data order (the examples each batch held), a
generating trainer's samples and the final weights must equal the uninterrupted run's. The SETUPS stop
mid-way through a later epoch of a shuffling sampler, with gradient accumulation where the trainer allows it.
The keyword arguments are the seams the "can fail" tests break a relation with.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from suite.invariants import harness as h
from suite.invariants.relations import NotApplicable, Verdict, compare, count
from suite.invariants.resume_leg import Leg, Setup, run_leg

# Every relation here compares two real runs and computes no expected value (tests/judge/test_oracles.py).
FORBIDDEN_ORACLES: dict[str, tuple[str, ...]] = {
    "resume.loss": (),
    "resume.weights": (),
    "resume.lr": (),
    "resume.order": (),
    "resume.samples": (),
    "resume.dtypes": (),
    "grpo.resume.order": (),
    "qlora.resume.loss": (),
    "qlora.resume.weights": (),
    "qlora.resume.dtypes": (),
}

# 3 epochs of a shuffling sampler, stopped in the second: 8 rows in batches of 2 with accumulation 2 make 2
# optimizer steps an epoch, 6 in all, stopped at step 3 (epoch 2's first step done, its second to go).
# DPO: its pairs in the same shape. GRPO: 4 prompts of 4 completions each (a generation batch is one prompt's
# group), no accumulation (trl's steps_per_generation follows it, and a resumed step inside a generation
# would need the lost buffer); one prompt a step, 4 steps an epoch. Stopped in the first epoch (step 2 of 6)
# it resumes exactly; stopped in the second (step 5 of 8) it does not (relations.GRPO_LATER_EPOCH). QLoRA resumes
# its adapter in float32 where it trained in bfloat16 (relations.QLORA_RESUMED_FP32). Known broken quantities
# are measured under the owner's relation (`qlora.resume.loss`), so that the base relation stays a verdict.
SETUPS: dict[str, Setup] = {s.name: s for s in (
    Setup("sft-lora", "sft", "lora", num_samples=8, batch_size=2, grad_accum=2, steps=6, stop=3),
    Setup("sft-full", "sft", "full", num_samples=8, batch_size=2, grad_accum=2, steps=6, stop=3),
    Setup("sft-qlora", "sft", "qlora", num_samples=8, batch_size=2, grad_accum=2, steps=6, stop=3,
          owner="qlora", known_broken=("loss", "weights", "dtypes")),
    Setup("plain-lora", "hf_trainer", "lora", num_samples=8, batch_size=2, grad_accum=2, steps=6, stop=3),
    Setup("dpo-lora", "dpo", "lora", num_samples=8, batch_size=2, grad_accum=2, steps=6, stop=3,
          learning_rate=5e-3),
    Setup("grpo-lora", "grpo", "lora", num_samples=4, batch_size=4, grad_accum=1, steps=6, stop=2),
    Setup("grpo-lora-epoch2", "grpo", "lora", num_samples=4, batch_size=4, grad_accum=1, steps=8, stop=5,
          owner="grpo", known_broken=("order",)),
)}


def measure_resume(method: str, out: Path, *, n: int = 2,
                   tamper: Callable[[Path], None] | None = None) -> list[Verdict]:
    """2N steps straight (saving at N) against resuming from the step-N checkpoint to 2N, in this process."""
    case = h.tiny_case(method, max_steps=2 * n, extra=dict(save_strategy="steps", save_steps=n))
    straight = h.build_trainer(case, out / "straight")
    losses_a = h.train_and_log(straight)
    weights_a = h.trainable_state(straight.trainer.model)
    ckpt = out / "straight" / f"checkpoint-{n}"
    if tamper is not None:
        tamper(ckpt)
    resumed = h.build_trainer(case, out / "resumed")
    losses_b = h.train_and_log(resumed, resume_from_checkpoint=str(ckpt))
    weights_b = h.trainable_state(resumed.trainer.model)
    what = f"{method}, steps {n + 1}..{2 * n}"
    return [compare("resume.loss", losses_a[n:], losses_b, what), compare("resume.weights", weights_a, weights_b, what)]


def drop_optimizer_state(ckpt: Path) -> None:
    """Resume as if the checkpoint had no optimizer and scheduler state (a fresh AdamW at step N)."""
    for name in ("optimizer.pt", "scheduler.pt"):
        (ckpt / name).unlink(missing_ok=True)


def drop_scheduler_state(ckpt: Path) -> None:
    """The scheduler's state lost: the resumed run's schedule starts again at step 0."""
    (ckpt / "scheduler.pt").unlink()


def drop_rng_state(ckpt: Path) -> None:
    """The random state not restored: the resumed run samples from the fresh process's generator."""
    for path in ckpt.glob("rng_state*.pth"):
        path.unlink()


def resume_in_new_process(setup: Setup, checkpoint: Path, out: Path, fault: str | None = None,
                          timeout_s: float = 600.0) -> Leg:
    """The resumed leg in a fresh interpreter of this Python, importing this tree of the suite."""
    import dataclasses

    import suite

    spec = out / "spec.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({"setup": dataclasses.asdict(setup), "checkpoint": str(checkpoint),
                                "output_dir": str(out / "trainer"), "record_dir": str(out / "record"),
                                "fault": fault}))
    root = str(Path(suite.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "suite.invariants.resume_leg", str(spec)], env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        if "NotApplicable" in tail:
            raise NotApplicable(tail.splitlines()[-1])
        raise RuntimeError(f"the resumed leg of {setup.name} exited {done.returncode}:\n{tail}")
    return Leg.load(out / "record")


def measure_resume_elsewhere(name: str, out: Path, *, tamper: Callable[[Path], None] | None = None,
                             fault: str | None = None) -> list[Verdict]:
    """SETUPS[name] straight here against resumed from its `stop` checkpoint in a new process; `tamper` changes
    the checkpoint, `fault` names a resume_leg.TRAINER_FAULTS entry installed in the resumed process."""
    setup = SETUPS[name]
    h.require_expressible(setup.case())
    straight = run_leg(setup, out / "straight")
    checkpoint = out / "straight" / f"checkpoint-{setup.stop}"
    if tamper is not None:
        tamper(checkpoint)
    resumed = resume_in_new_process(setup, checkpoint, out / "resumed", fault)
    return compare_legs(setup, straight, resumed)


def _after(pairs: list[tuple[int, list]], stop: int) -> list[tuple[int, list]]:
    return [(step, content) for step, content in pairs if step >= stop]


def _drawn(order: list[tuple[int, list[int]]]) -> list[tuple[int, list[int]]]:
    """Batches by their place in the sequence, not the step they were drawn at: the dataloader collates one
    batch ahead of the step that trains on it (accelerate's prefetch), and a resumed loader skips the steps
    already trained without collating them (a run that ends inside an epoch collates one batch it does not
    train on, in both legs alike)."""
    return [(i, ids) for i, (_, ids) in enumerate(order)]


def _differing(a: list[tuple[int, list]], b: list[tuple[int, list]]) -> list[str]:
    """The places where two recorded sequences differ (a length difference counts each missing one); samples
    are numbered by the step that drew them, batches by their place after the stop."""
    bad = [f"#{x[0] + 1}: {str(x[1])[:40]} vs {str(y[1])[:40]}" for x, y in zip(a, b) if x != y]
    return bad + [f"only one leg has #{p[0] + 1}" for p in (a[len(b):] or b[len(a):])]


def _recorded(setup: Setup, leg: Leg) -> None:
    """What the relations compare was recorded: a recorder that saw nothing would make them hold vacuously."""
    from suite.matrix.axes import FORMAT

    lost = [what for what, missing in (
        ("a loss per step", len(leg.losses) != setup.steps),
        ("a batch per micro-step", len(leg.order) < setup.steps * setup.grad_accum),
        ("every row found in the training set", any(-1 in ids for _, ids in leg.order)),
        ("a generation per step", FORMAT[setup.case().dataset].generates and len(leg.samples) < setup.steps))
        if missing]
    if lost:
        raise RuntimeError(f"the uninterrupted leg of {setup.name} did not record {', '.join(lost)}: "
                           f"{len(leg.losses)} losses, {len(leg.order)} batches, {len(leg.samples)} generations")


def compare_legs(setup: Setup, straight: Leg, resumed: Leg) -> list[Verdict]:
    """The relations between the uninterrupted leg (from its `stop`) and the resumed one."""
    _recorded(setup, straight)
    what = (f"{setup.name}, {setup.trainer} {setup.method}, batch {setup.batch_size}x{setup.grad_accum}, "
            f"steps {setup.stop + 1}..{setup.steps} resumed in a new process")
    cut = straight.steps.index(setup.stop + 1) if setup.stop + 1 in straight.steps else len(straight.steps)
    rel = setup.relation
    dtypes = [f"{n}: {d} vs {resumed.dtypes.get(n)}" for n, d in straight.dtypes.items() if resumed.dtypes.get(n) != d]
    verdicts = [compare(rel("loss"), straight.losses[cut:], resumed.losses, what),
                compare(rel("lr"), straight.lrs[cut:], resumed.lrs, what),
                count(rel("dtypes"), dtypes, f"{what}, {len(straight.dtypes)} trainable tensors"),
                count(rel("order"), _differing(_drawn(straight.order[setup.stop * setup.grad_accum:]),
                                                 _drawn(resumed.order)), f"{what}, {len(resumed.order)} batches"),
                compare(rel("weights"), straight.weights, resumed.weights, what)]
    if straight.samples:
        verdicts.append(count(rel("samples"), _differing(_after(straight.samples, setup.stop), resumed.samples),
                              f"{what}, {len(resumed.samples)} generations"))
    return verdicts
