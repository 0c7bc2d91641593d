"""Faults aimed at one family of 2026 (suite/train/chat.py's STYLES), each planted where only that family's code
or template reads it, for the aimed can-fail tests of tests/invariants/test_family_*.py: each breaks its relation on
its family and on no other. Apart from the relations' modules, whose oracle scan (tests/judge/test_oracles.py)
holds them to never referencing the functions they judge."""
from __future__ import annotations

import contextlib
import importlib
from typing import Callable, Iterator

from suite.invariants.relations import NotApplicable

# transformers' Gemma 3 modeling looks create_sliding_window_causal_mask up in its own module (Gemma 4's, Mistral's,
# gpt-oss's have their own names): a wrapper there changes Gemma 3's sliding layers and nothing else
GEMMA3_MODELING = "transformers.models.gemma3.modeling_gemma3"


@contextlib.contextmanager
def _wrapped(module_name: str, attribute: str, wrap: Callable) -> Iterator[None]:
    try:
        module = importlib.import_module(module_name)
        original = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise NotApplicable(f"the fault changes {module_name}.{attribute}, which the installed transformers does not "
                            f"have ({exc})") from None
    setattr(module, attribute, wrap(original))
    try:
        yield
    finally:
        setattr(module, attribute, original)


def gemma3_window_across_packed_sequences() -> contextlib.AbstractContextManager:
    """Gemma 3's sliding-window mask built without the position_ids that tell packed sequences apart (a mask
    builder that forgets them): its sliding layer then attends across a packed boundary within its window."""
    def wrap(create):
        def create_without_positions(*args, **kwargs):
            kwargs["position_ids"] = None
            return create(*args, **kwargs)
        return create_without_positions
    return _wrapped(GEMMA3_MODELING, "create_sliding_window_causal_mask", wrap)


# Phi's assistant turn in suite/train/chat.py's PHI style: the role marker, then the generation block
PHI_ASSISTANT = "<|assistant|> {% generation %}"


def phi_generation_holds_the_role(template: str) -> str:
    """Phi's template with its generation block opened before the assistant marker (assistant_only_loss then
    trains on the role header); a template without Phi's assistant turn is returned unchanged."""
    return template.replace(PHI_ASSISTANT, "{% generation %}<|assistant|> ")
