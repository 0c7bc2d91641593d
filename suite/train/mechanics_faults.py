"""Known faults of the training mechanics, for the generic relations' tests (suite/judge/mechanics.py):
silent changes of the kind releases shipped, each aimed at one relation. suite/train/inject.py declares
them in its SEAMS and installs them under FTSUITE_INJECT only; nothing in training imports this module.

- `lr_ahead`: the scheduler's lambda is read one step ahead (every step runs at the next step's rate);
- `clip_threshold`: the gradients are clipped at CLIP_FRACTION x max_grad_norm, not at max_grad_norm;
- `decay_where_zero`: every parameter group whose weight decay is 0 gets DECAY (norms and biases included,
  and everything where the config's weight_decay is 0);
- `update_overshoot`: the optimizer's step moves every parameter OVERSHOOT further than its own update (as
  a fused kernel reading another rate than its group's would), its groups' rates untouched;
- `lora_sqrt_scale`: peft's LoRA layers scale by lora_alpha / sqrt(r), rsLoRA's, without use_rslora (a seam
  on peft's LoraLayer.update_layer: the reloaded adapter gets the same scaling, as a peft release would give it).
"""
from __future__ import annotations

import math
from typing import Any, Callable

from suite.train.backends.base import DeclaredFaults

# clipping at a tenth of max_grad_norm: the tiny cases' pre-clip norms (0.2 to 9, measured on the
# clean runs of suite/judge/mechanics.py's table) then clip at most steps, where max_grad_norm 1 clips few
CLIP_FRACTION = 0.1
DECAY = 0.1  # the weight decay the decay fault puts where there was none
OVERSHOOT = 0.1  # the update fault's extra fraction of each step


def mechanics_faults(trainer: Any, faults: dict[str, float]) -> None:
    if "lr_ahead" in faults:
        creating = trainer.create_scheduler

        def create_scheduler(*args, **kwargs):
            scheduler = creating(*args, **kwargs)
            scheduler.lr_lambdas = [lambda step, f=f: f(step + 1) for f in scheduler.lr_lambdas]
            return scheduler

        trainer.create_scheduler = create_scheduler
    if "clip_threshold" in faults:
        accelerator = trainer.accelerator
        clipping = accelerator.clip_grad_norm_

        def clip_grad_norm_(parameters, max_norm, *args, **kwargs):
            return clipping(parameters, max_norm * CLIP_FRACTION if math.isfinite(max_norm) else max_norm,
                            *args, **kwargs)

        accelerator.clip_grad_norm_ = clip_grad_norm_
    if "decay_where_zero" in faults:
        creating_optimizer = trainer.create_optimizer

        def create_optimizer(*args, **kwargs):
            optimizer = creating_optimizer(*args, **kwargs)
            for group in optimizer.param_groups:
                if not group.get("weight_decay"):
                    group["weight_decay"] = DECAY
            return optimizer

        trainer.create_optimizer = create_optimizer


    if "update_overshoot" in faults:
        _overshoot(trainer)


def _overshoot(trainer: Any) -> None:
    """Hooks on the optimizer the trainer creates, registered before the suite's recorder's: they run first,
    so the recorder sees the parameters as the faulty step left them."""
    creating = trainer.create_optimizer

    def create_optimizer(*args, **kwargs):
        optimizer = creating(*args, **kwargs)
        before: dict[int, Any] = {}

        def pre(opt, *_):
            before.update({id(p): p.detach().clone() for g in opt.param_groups for p in g["params"]})

        def post(opt, *_):
            for group in opt.param_groups:
                for p in group["params"]:
                    p.data.add_(OVERSHOOT * (p.data - before[id(p)]))

        optimizer.register_step_pre_hook(pre)
        optimizer.register_step_post_hook(post)
        return optimizer

    trainer.create_optimizer = create_optimizer


MECHANICS_FAULTS = DeclaredFaults(("lr_ahead", "clip_threshold", "decay_where_zero", "update_overshoot"),
                                  mechanics_faults)


def sqrt_scaling(original: Callable) -> Callable:
    """peft's LoraLayer.update_layer, then the layer's scaling lora_alpha / sqrt(r) whatever use_rslora says."""
    def update_layer(self, adapter_name, *args, **kwargs):
        out = original(self, adapter_name, *args, **kwargs)
        if adapter_name in getattr(self, "scaling", {}):
            self.scaling[adapter_name] = self.lora_alpha[adapter_name] / math.sqrt(self.r[adapter_name])
        return out

    return update_layer
