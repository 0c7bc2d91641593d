"""full / lora through trl's DistillationTrainer: prompt-only data, completions sampled on-policy by the student,
the loss trl's generalized JSD between the student's and the teacher's next-token distributions on them.

The teacher is the same tiny architecture and vocabulary (trl refuses a teacher of another vocabulary size) built
from another seed (TEACHER_SEED), given to trl by path as users give it (`teacher_model="..."`, loaded with
`teacher_model_init_kwargs`). Why not a trained teacher: a seed costs nothing and keeps the case offline and
deterministic; two random tiny models already differ by a measurable divergence (about 0.02-0.03 nats a token,
their logits' spread being ~0.16), which the student can close. The suite loads its own copy of the teacher
(recorder.py) so that what the checks compare with is the teacher the case names, not trl's object."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.matrix.axes import PROMPT_ONLY_FORMATS
from suite.train import compat, models
from suite.train.backends.base import NO_HOOKS, BuildHooks
from suite.train.backends.distill import checks as own_checks
from suite.train.backends.distill import faults as own_faults
from suite.train.backends.distill import metrics as own_metrics
from suite.train.backends.distill import relations as own_relations
from suite.train.backends.distill.config import PINNED, declared, distill_config
from suite.train.backends.distill.recorder import RECORDED_STEPS, DistillRecorder
from suite.train.backends.sft.backend import HFSFTTrainer

if TYPE_CHECKING:
    from suite.matrix.spec import Case

TEACHER_SEED = 1  # the student is the tiny model of seed 0 (models.materialise_tiny's default)
KEY = "distillation"  # where the record keeps what recorder.py captured (resolved.distillation)


class Distill(HFSFTTrainer):
    name = "trl DistillationTrainer"
    label = "Distill"
    trainer = "distill"
    description = "trainer: trl's DistillationTrainer (prompt-only data, on-policy completions, a tiny teacher)"
    formats = PROMPT_ONLY_FORMATS
    features: tuple[str, ...] = ("by_name",)
    distributed = False
    max_length_cut = None  # DistillationConfig has no max_length: max_completion_length caps what a step adds
    # the held-out divergence falls, then the logged loss by its definition (relations.py)
    checks = own_checks.CHECKS + own_relations.RELATIONS
    metrics = own_metrics.METRICS
    logged_metrics = own_metrics.LOGGED_METRICS
    logged_keys = own_metrics.LOGGED_KEYS
    faults = (own_faults.DISTILL_FAULTS,)

    def version_needs(self, case: Case) -> list[str]:
        return ["distillation_trainer", "trl_loss_kernel"]

    def cannot_run(self, case: Case) -> str | None:
        if not case.model.scale.built:
            return f"{self.name}: the suite builds its teacher only for the models it builds (a seed-{TEACHER_SEED} twin)"
        if case.quantization.bits is not None:
            return f"{self.name}: no quantized case is measured yet"
        return None

    def declared_fields(self, case: Case, common: dict) -> dict:
        return {**common, **PINNED, **dict(case.training.extra)}

    def teacher_path(self, case: Case) -> str:
        return str(models.materialise_tiny(case.model.arch or "llama", seed=TEACHER_SEED))

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None,
                      hooks: BuildHooks = NO_HOOKS) -> tuple[Any, Any, dict]:
        tokenizer = hooks.tokenizer if hooks.tokenizer is not None else models.load_tokenizer(model_path)
        load_kwargs = self.reload_kwargs(case, device, dtype)
        init_kwargs, trainer_kwargs = compat.quantization_args(load_kwargs)
        args = distill_config(case, output_dir, device, precision, init_kwargs, teacher_kwargs(init_kwargs))
        peft_config = hooks.peft_config if hooks.peft_config is not None else self.lora(case)
        trainer = (hooks.trainer_cls or self.trl_trainer())(
            model=model_path, teacher_model=self.teacher_path(case), args=args, train_dataset=dataset,
            eval_dataset=eval_dataset, **self.given_tokenizer(case, tokenizer), peft_config=peft_config,
            callbacks=callbacks, **trainer_kwargs, **hooks.trainer_kwargs)
        trainer._ftsuite_case = case  # what instrument reads beta, temperature and the teacher's path from
        return trainer, self.tokenizer_of(case, trainer, tokenizer), load_kwargs

    def lora(self, case: Case) -> Any:
        from suite.train import args as train_args

        return train_args.lora_config(case) if case.is_adapter else None

    def trl_trainer(self) -> type:
        from trl import DistillationTrainer

        return DistillationTrainer

    def instrument(self, trainer: Any) -> Any:
        """The logits recorder around trl's loss (after any known fault); it counts each step's tokens too (trl's
        collator is the identity: the batch is generated, not collated)."""
        from transformers import AutoModelForCausalLM

        case = trainer._ftsuite_case
        student = trainer.accelerator.unwrap_model(trainer.model)
        teacher = AutoModelForCausalLM.from_pretrained(self.teacher_path(case), dtype=student.dtype)
        trainer._ftsuite_recorder = DistillRecorder(trainer, teacher.to(student.device).eval(),
                                                    trainer.processing_class)
        return trainer._ftsuite_recorder

    def describe(self, trainer: Any) -> dict:
        """What the distillation checks judge: the settings as the case declares them (not trl's attributes, which
        a fault may change), the recorded steps' logits, the held-out logits before and after training."""
        case, recorder = trainer._ftsuite_case, trainer._ftsuite_recorder
        return {KEY: {"settings": {"beta": declared(case, "beta"), "temperature": declared(case, "temperature"),
                                   "teacher": self.teacher_path(case), "recorded_steps": RECORDED_STEPS},
                      "micro_batches": recorder.micro_batches,
                      "heldout": {**recorder.heldout, "after": recorder.heldout_logits()}}}


def teacher_kwargs(init_kwargs: dict | None) -> dict:
    """The student's init kwargs for the teacher, its dtype by name (trl reads the teacher's as a string)."""
    out = dict(init_kwargs or {})
    dtype = out.get("dtype")
    if dtype is not None and not isinstance(dtype, str):
        out["dtype"] = str(dtype).removeprefix("torch.")
    return out


BACKEND = Distill()
