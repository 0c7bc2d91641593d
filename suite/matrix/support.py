"""What the training side tells the matrix when the case files load: the trainers it has and why it
cannot train a combination. The matrix declares this shape; suite/train/backends/registry.py fills
it, and suite/cases.py hands it to the loader, so that nothing in the matrix imports a backend."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Protocol

if TYPE_CHECKING:
    from suite.matrix.spec import Case


class Support(Protocol):
    @property
    def trainers(self) -> Mapping[str, str]:
        """Every trainer axis value, with the marker description it registers."""

    def cannot_train(self, case: Case) -> str | None:
        """Why no backend trains this combination as declared, or None."""
