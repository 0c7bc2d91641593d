"""One object per quantization of the base (the matrix's Quantization values, suite/matrix/axes.py),
declaring what the rest of the suite would otherwise test by comparing method names: how it loads a
base, what it requires, what its adapter merges into, what it probes. Heavy imports stay inside the
methods: the parent reads the declarations."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suite.matrix.axes import BNB_4BIT, BNB_8BIT, NO_QUANTIZATION, Quantization
from suite.versions import package_version, version_at_least

if TYPE_CHECKING:
    from suite.matrix.spec import Case

# bitsandbytes runs 4-bit nf4 on a CPU from this release on.
BNB_CPU_4BIT = "0.46.0"


class Quantizer:
    axis: Quantization = NO_QUANTIZATION
    # its adapter is also merged into the dequantised base (how a QLoRA adapter is meant to be merged),
    # besides straight into the stored base (suite/invariants/saving.py)
    merges_dequantized = False

    @property
    def quantized(self) -> bool:
        return self.axis.bits is not None

    def load_kwargs(self, dtype: Any) -> dict:
        """What from_pretrained gets to load the base this way (a quantization_config, or nothing)."""
        return {}

    def missing(self, case: Case, cuda: bool) -> list[str]:
        """What this machine lacks to load such a base, as messages naming the package and version."""
        return []

    def summary(self, model: Any) -> dict | None:
        """The stored base's footprint (bits per parameter), or None for an unquantized base."""
        return None

    def repacked(self, model: Any) -> bool:
        """Whether the library switched the stored base to other kernels since it was loaded."""
        return False


class Bnb4Bit(Quantizer):
    axis = BNB_4BIT
    merges_dequantized = True

    def load_kwargs(self, dtype: Any) -> dict:
        from transformers import BitsAndBytesConfig

        return {"quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)}

    def missing(self, case: Case, cuda: bool) -> list[str]:
        bnb = package_version("bitsandbytes")
        if bnb is None:
            return ["the package bitsandbytes (pip install bitsandbytes), not installed"]
        if not case.needs_gpu and not cuda and not version_at_least(bnb, BNB_CPU_4BIT):
            return [f"bitsandbytes>={BNB_CPU_4BIT} for 4-bit on a CPU (installed: {bnb})"]
        return []

    def summary(self, model: Any) -> dict | None:
        from suite.train import probes

        return probes.quantized_summary(model)

    def repacked(self, model: Any) -> bool:
        from suite.train.measure import repacked_4bit  # imports transformers: the child's side only

        return repacked_4bit(model)


class Bnb8Bit(Quantizer):
    axis = BNB_8BIT

    def load_kwargs(self, dtype: Any) -> dict:
        from transformers import BitsAndBytesConfig  # trl's "training adapters with base 8 bit models"

        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}

    def missing(self, case: Case, cuda: bool) -> list[str]:
        if package_version("bitsandbytes") is None:
            return ["the package bitsandbytes (pip install bitsandbytes), not installed"]
        return []


QUANTIZERS: dict[str, Quantizer] = {q.axis.name: q for q in (Quantizer(), Bnb4Bit(), Bnb8Bit())}


def quantizer_for(case: Case) -> Quantizer:
    return QUANTIZERS[case.quantization.name]
