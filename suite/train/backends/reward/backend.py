"""full / lora through trl's RewardTrainer: a sequence classifier with one output (transformers'
AutoModelForSequenceClassification on the tiny model's directory, num_labels=1, pad_token_id set; its
score head is new, seeded) trained on the preference data (prompt, chosen, rejected) with the pairwise
loss -log sigmoid(r_chosen - r_rejected). The LoRA adapter is peft's SEQ_CLS task: the score head is
trained and saved with it (modules_to_save). Probed and reloaded as a classifier: its scores on the probe
texts (suite/train/routes.py's seq_cls head and routes)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite.matrix.axes import ADAPTERS, NO_QUANTIZATION, PREFERENCE_FORMATS
from suite.train import args as train_args
from suite.train import compat, models
from suite.train.backends.base import NO_HOOKS, BuildHooks
from suite.train.backends.sft.backend import HFSFTTrainer
from suite.train.backends.reward import checks as own_checks
from suite.train.backends.reward import metrics as own_metrics
from suite.train.backends.reward.config import reward_config
from suite.train.backends.reward import relations as own_relations
from suite.train.backends.reward.faults import DROP_SCORE, REWARD_FAULTS

if TYPE_CHECKING:
    from suite.matrix.spec import Case


class Reward(HFSFTTrainer):
    name = "trl RewardTrainer"
    label = "Reward"
    trainer = "reward"
    description = "trainer: trl's RewardTrainer (a one-output sequence classifier on preference data)"
    adapters = ADAPTERS
    quantizations = (NO_QUANTIZATION,)  # a 4-bit classifier is not what this row checks
    formats = PREFERENCE_FORMATS
    features = ("gradient_checkpointing", "adamw_8bit", "sdpa", "eager", "by_name")
    distributed = False
    head = "seq_cls"
    generates = False
    adapter_carries = ("score",)  # the score head, saved with the adapter (peft's modules_to_save for SEQ_CLS)
    checks = own_checks.CHECKS + own_relations.RELATIONS
    metrics = own_metrics.METRICS
    logged_metrics = own_metrics.LOGGED_METRICS
    logged_keys = own_metrics.LOGGED_KEYS
    faults = (DROP_SCORE, REWARD_FAULTS)

    def version_needs(self, case: Case) -> list[str]:
        return ["reward_warnings_issued", *(["reward_by_name"] if case.uses.by_name else [])]

    def declared_fields(self, case: Case, common: dict) -> dict:
        return {**common, "max_length": case.training.max_length, **dict(case.training.extra)}

    def reload_kwargs(self, case: Case, device: str, dtype: Any) -> dict:
        """The causal LM's load arguments plus num_labels=1 (build_trainer adds the tokenizer's pad_token_id)."""
        return {**train_args.model_init_kwargs(case, device, dtype), "num_labels": 1}

    def saved_load_kwargs(self, case: Case, model_path: str, device: str, dtype: Any) -> dict:
        return self._load_kwargs(case, device, dtype, models.load_tokenizer(model_path))

    def _load_kwargs(self, case: Case, device: str, dtype: Any, tokenizer: Any) -> dict:
        # the classifier scores the last non-padding token: it must know the padding id
        return {**self.reload_kwargs(case, device, dtype), "pad_token_id": tokenizer.pad_token_id}

    def peft_config(self, case: Case, hooks: BuildHooks) -> Any:
        if hooks.peft_config is not None:
            return hooks.peft_config
        if not case.is_adapter:
            return None
        config = train_args.lora_config(case)
        config.task_type = "SEQ_CLS"  # peft then trains and saves the score head (modules_to_save)
        return config

    def build_trainer(self, case: Case, model_path: str, device: str, precision: str, dtype: Any, output_dir: Path,
                      dataset: Any, callbacks: list, eval_dataset: Any = None,
                      hooks: BuildHooks = NO_HOOKS) -> tuple[Any, Any, dict]:
        from transformers import AutoModelForSequenceClassification
        from trl import RewardTrainer

        tokenizer = hooks.tokenizer if hooks.tokenizer is not None else models.load_tokenizer(model_path)
        load_kwargs = self._load_kwargs(case, device, dtype, tokenizer)
        if case.uses.by_name:  # trl builds the classifier itself (num_labels=1, after set_seed(args.seed))
            model = model_path
            args = reward_config(case, output_dir, device, precision, train_args.model_init_kwargs(case, device, dtype))
        else:
            model = AutoModelForSequenceClassification.from_pretrained(model_path, **load_kwargs)
            args = reward_config(case, output_dir, device, precision)
        trainer = (hooks.trainer_cls or RewardTrainer)(
            model=model, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
            **self.given_tokenizer(case, tokenizer), peft_config=self.peft_config(case, hooks), callbacks=callbacks,
            **hooks.trainer_kwargs)
        return trainer, self.tokenizer_of(case, trainer, tokenizer), load_kwargs

    def instrument(self, trainer: Any) -> Any:
        """The token counter, and the recorder of the scores the loss was computed from (recorder.py), outermost."""
        from suite.train.backends.reward.recorder import ScoreRecorder

        counter = super().instrument(trainer)
        trainer.suite_score_recorder = ScoreRecorder(trainer)
        return counter

    def describe(self, trainer: Any) -> dict:
        """What the by-definition relations read: the centring coefficient, the recorded scores, and the
        trained model's scores of texts alone and padded (measured here, after training, in the child)."""
        from suite.train.backends.reward.recorder import padding_scores

        recorder = getattr(trainer, "suite_score_recorder", None)
        if recorder is None:
            return {}
        model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        padding = padding_scores(model, trainer.processing_class, trainer.train_dataset, str(trainer.args.device))
        unlogged = compat.REQUIREMENTS["reward_logs_pairs"].missing()  # the release logs no accuracy or margin
        return {"by_definition": {"settings": {"center_rewards_coefficient": trainer.args.center_rewards_coefficient},
                                  **recorder.record(), "padding": padding},
                **({"pairs_not_logged": f"needs {unlogged}"} if unlogged else {})}

    def routes(self, case: Case) -> tuple:
        from suite.train import routes

        return routes.ROUTES["seq_cls"]

    def reload(self, case: Case, model_path: str, checkpoint: Path, load_kwargs: dict) -> tuple[Any, str]:
        """peft's PeftModel on a fresh classifier base for an adapter, from_pretrained for a full model; the
        scores on the probe texts."""
        from suite.train import routes

        device = "cuda" if load_kwargs.get("device_map") else "cpu"
        ctx = self.route_context(case, model_path, checkpoint, load_kwargs, device)
        if case.is_adapter:
            load, loader = (lambda: routes.peft_model(ctx)), "PeftModel.from_pretrained (sequence classifier)"
        else:
            load, loader = (lambda: routes.FullModel().load(ctx)), "AutoModelForSequenceClassification.from_pretrained"
        try:
            model = load()
        except Exception as exc:  # peft refuses an adapter without its score head: a failed reload, not a crash
            import torch

            return torch.tensor([float("inf")]), f"{loader}, which raised {type(exc).__name__}: {str(exc)[:200]}"
        return routes.probe(model, models.load_tokenizer(model_path), device, self.head), loader


BACKEND = Reward()
