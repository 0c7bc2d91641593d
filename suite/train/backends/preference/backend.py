"""The preference trainers' backend (trl's DPOTrainer and KTOTrainer, subclassed in dpo/ and kto/): the
model given as a path with ref_model=None, the reference snapshotted before training and compared after."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.train import compat, models, probes
from suite.train.backends.base import NO_HOOKS, BuildHooks, TrainerCheck
from suite.train.backends.sft.backend import HFSFTTrainer
from suite.train.backends.preference.faults import REFERENCE
from suite.train.backends.preference.relations import ROUTER_COEF
from suite.train.quantize import quantizer_for

if TYPE_CHECKING:
    from suite.matrix.spec import Case


class Preference(HFSFTTrainer):
    """A preference trainer: subclasses name their trl trainer (trl_trainer), config builder (trl_config)
    and beta."""

    faults = (REFERENCE,)
    BETA: float  # the subclass's (its config.py's), which declared_fields pins
    # the by-definition relations (its relations.py) and the config fields they read back from trl's arguments
    relations: tuple[TrainerCheck, ...] = ()
    settings: tuple[str, ...] = ("beta",)
    own_forward: Any = None  # the suite's own forward at the first step (DPO: own_logps.dpo_own)

    def checks_for(self, case: Case) -> tuple[TrainerCheck, ...]:
        """Its checks and, in one process, its by-definition relations: across ranks trl gathers the rewards and
        averages the loss over ranks, and one rank's record holds only its own rows (not covered yet)."""
        return self.checks + (() if case.distributed else self.relations)

    def instrument(self, trainer: Any) -> Any:
        """The token counter, and the recorder of what the loss was computed from (recorder.py), outermost."""
        from suite.train.backends.preference.recorder import LogpsRecorder

        counter = super().instrument(trainer)
        # before trl 1.15 the trainers have no `_compute_loss` to wrap and no fused LM head to read: no recorder
        if compat.REQUIREMENTS["preference_fused_head"].missing() is None:
            trainer.suite_logps_recorder = LogpsRecorder(trainer, self.own_forward)
        return counter

    def describe(self, trainer: Any) -> dict:
        """What the by-definition relations read: the config fields the formulas take and the recorded steps;
        on a release the recorder cannot read, why (the relations then say not judged, by name, not failed)."""
        unreadable = compat.REQUIREMENTS["preference_fused_head"].missing()
        if unreadable:
            return {"by_definition": {"not_judged": f"needs {unreadable}"}}
        args, recorder = trainer.args, getattr(trainer, "suite_logps_recorder", None)
        if recorder is None:
            return {}
        settings = {k: _jsonable(getattr(args, k, None)) for k in self.settings}
        settings[ROUTER_COEF] = router_coef(trainer)
        return {"by_definition": {"settings": settings, **recorder.record()}}

    def version_needs(self, case: Case) -> list[str]:
        return ["trl_loss_kernel", "trl_package_checks"]

    def declared_fields(self, case: Case, common: dict) -> dict:
        return {**common, "max_length": case.training.max_length, "beta": self.BETA, **dict(case.training.extra)}

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None,
                      hooks: BuildHooks = NO_HOOKS) -> tuple[Any, Any, dict]:
        tokenizer = hooks.tokenizer if hooks.tokenizer is not None else models.load_tokenizer(model_path)
        probes.ensure_chat_template(tokenizer)
        load_kwargs = self.reload_kwargs(case, device, dtype)
        init_kwargs, trainer_kwargs = compat.quantization_args(load_kwargs)
        args = self.trl_config(case, output_dir, device, precision, init_kwargs)
        trainer = (hooks.trainer_cls or self.trl_trainer())(
            model=model_path, ref_model=None, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
            **self.given_tokenizer(case, tokenizer), peft_config=self.peft_config(case, hooks), callbacks=callbacks,
            **trainer_kwargs, **hooks.trainer_kwargs)
        return trainer, self.tokenizer_of(case, trainer, tokenizer), load_kwargs

    def reference_snapshot(self, trainer: Any, case: Case, tokenizer: Any, device: str) -> Any:
        model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        return _reference_logits(trainer, tokenizer, device)[1], quantizer_for(case).repacked(model)

    def reference(self, trainer: Any, case: Case, before: Any, tokenizer: Any, device: str) -> dict | None:
        """The reference the loss was computed against, after training, vs the same model object's
        reference before training, on the same kernels (a trained or shared reference would move DPO's
        implicit rewards without showing in the loss). A fresh load of the base is not compared: on an
        AVX512-BF16 CPU it takes another bitsandbytes path and differs by rounding, not by training."""
        before, packed_before = before
        model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        kind, after = _reference_logits(trainer, tokenizer, device)
        diff = (after - before).abs().max().item() if after.shape == before.shape else float("inf")
        return {"kind": kind, "max_abs_logit_diff": diff, "repacked": quantizer_for(case).repacked(model) != packed_before,
                "compared": "the reference's logits on the probe input before and after training, same model "
                            "object, training mode (the kernels training used)"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _reference_logits(trainer: Any, tokenizer: Any, device: str) -> tuple[str, Any]:
    """The reference's probe logits in training mode under no_grad: the kernels its training forwards
    ran (an eval-mode forward would repack a 4-bit base for bitsandbytes' bf16 inference GEMM on an
    AVX512-BF16 CPU, and every later forward would run that GEMM)."""
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    if trainer.ref_model is not None:
        ref = trainer.accelerator.unwrap_model(trainer.ref_model, keep_fp32_wrapper=False)
        return "ref_model (a copy trl loaded)", probes.probe_logits(ref, tokenizer, device, train_mode=ref.training)
    with model.disable_adapter():
        logits = probes.probe_logits(model, tokenizer, device, train_mode=True)
    model.train()
    return "the disabled adapter", logits


def router_coef(trainer: Any) -> float:
    """The coefficient of the router's auxiliary loss in the trainer's loss (relations.ROUTER_COEF), 0 when it adds
    none: trl 1.16's DPOTrainer.router_aux_loss_coef (the model's own unless DPOConfig sets one), older releases'
    aux_loss_coef (the model config's)."""
    if not getattr(trainer, "aux_loss_enabled", False):
        return 0.0
    coef = getattr(trainer, "router_aux_loss_coef", None)
    return float(getattr(trainer, "aux_loss_coef", 0.0) if coef is None else coef)
