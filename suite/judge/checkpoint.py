"""Read what a saved checkpoint holds from the files themselves (safetensors headers), no torch."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
# Saved beside the weights by Trainer.save_model: the pickled TrainingArguments, no tensors.
NOT_WEIGHTS = {"training_args.bin"}


@dataclass
class Tensor:
    name: str
    dtype: str
    shape: list[int]
    nbytes: int


@dataclass
class Inventory:
    directory: str
    files: list[dict] = field(default_factory=list)  # name, bytes
    tensors: list[Tensor] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f["bytes"] for f in self.files)

    @property
    def weight_files(self) -> list[str]:
        return [f["name"] for f in self.files
                if f["name"].endswith(WEIGHT_SUFFIXES) and Path(f["name"]).name not in NOT_WEIGHTS]

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def to_dict(self) -> dict:
        return {"directory": self.directory, "files": self.files, "total_bytes": self.total_bytes,
                "tensor_count": len(self.tensors), "tensor_bytes": self.tensor_bytes,
                "tensor_dtypes": sorted({t.dtype for t in self.tensors}),
                "weight_files": self.weight_files}


def read_safetensors_header(path: Path) -> dict:
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: truncated safetensors file (no header length)")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 * 2**20:
            raise ValueError(f"{path}: implausible safetensors header length {length}")
        header = fh.read(length)
    if len(header) != length:
        raise ValueError(f"{path}: truncated safetensors header")
    return json.loads(header)


def inventory(directory: str | Path) -> Inventory:
    directory = Path(directory)
    inv = Inventory(str(directory))
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            inv.files.append({"name": str(p.relative_to(directory)), "bytes": p.stat().st_size})
            if p.suffix == ".safetensors":
                for name, meta in read_safetensors_header(p).items():
                    if name == "__metadata__":
                        continue
                    start, end = meta["data_offsets"]
                    inv.tensors.append(Tensor(name, meta["dtype"], meta["shape"], end - start))
    return inv
