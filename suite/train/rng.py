"""torch's random state, taken and put back: the recorders that replay a step (a generation, a forward) from
the random state the trainer's own started from, and leave the stream as training left it."""
from __future__ import annotations


def rng_state() -> tuple:
    """The CPU generator's state and, where CUDA is available, every device's."""
    import torch

    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def set_rng(state: tuple) -> None:
    import torch

    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])
