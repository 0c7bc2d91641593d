"""Which machines and runs a reference's value comes from, and the spread measured between the machines
of one kernel class (docs/kernel-classes.md, "One machine is provisional").

A kernel class says which kernels a run took, not that two machines of the class give the same numbers:
the tiny mixture of experts' QLoRA curve moved 0.027 at one step between the two `avx512-bf16` machines
at hand (an AMD Zen 4 and an Intel Xeon with AMX), while every dense case agreed to 0.0034. So a
reference records the machines and runs it comes from, each run with how far its curve lies from the
reference's. One machine's reference is provisional: it is judged with the spread measured between the
machines of its class for its method family (suite/judge/baselines.py), and says so.

A machine is its CPU as the kernels see it: vendor, model and the kernel-deciding flags
(suite/machine.py's KERNEL_FLAGS), the fields every record's environment and every reference's hardware
carry. Not the host name: both machines at hand call themselves `vm`, and a CI runner's name changes
with every run while its numbers do not.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from suite.errors import RecordError
from suite.matrix.spec import Case
from suite.paths import ROOT

FIELD = "machines"  # the reference header's field
HOW = ("a run's atol and drift: the largest per-step difference and the |mean residual| of its loss curve "
       "against this reference's curve; spread: the largest of its runs'")


def family_of(case: Case) -> str:
    """The method family a spread between machines is kept for: trainer and method (adapter x
    quantization x library), the axes that decide which kernels the loss goes through."""
    return f"{case.trainer}-{case.method}"


@dataclass(frozen=True)
class Machine:
    cpu: str  # vendor and model, as records' provenance names them
    flags: str  # the kernel-deciding CPU flags, space separated

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.cpu}|{self.flags}".encode()).hexdigest()[:8]


def machine_of(environment: dict) -> Machine:
    """The machine of a record's environment (or of suite.records.provenance.capture())."""
    cpu = environment.get("cpu") or {}
    name = " ".join(str(v) for v in (cpu.get("vendor"), cpu.get("model")) if v)
    return Machine(name or "unknown CPU", " ".join(cpu.get("flags") or []))


def machine_of_hardware(hardware: dict) -> Machine:
    """The machine of a reference's hardware fields (suite/judge/baselines.hardware_of)."""
    return Machine(hardware.get("cpu") or "unknown CPU", hardware.get("cpu_flags") or "")


@dataclass(frozen=True)
class Run:
    run: str  # its run id
    records: str  # where its records are
    recorded_at: str
    atol: float  # largest per-step difference of its curve from the reference's
    drift: float  # |mean residual| of its curve against the reference's

    def to_dict(self) -> dict:
        return {"run": self.run, "records": self.records, "recorded_at": self.recorded_at,
                "atol": self.atol, "drift": self.drift}


@dataclass(frozen=True)
class MachineRuns:
    machine: Machine
    runs: tuple[Run, ...]

    def to_dict(self) -> dict:
        return {"id": self.machine.id, "cpu": self.machine.cpu, "flags": self.machine.flags,
                "runs": [r.to_dict() for r in self.runs]}


@dataclass(frozen=True)
class Provenance:
    """The machines and runs of one reference."""

    machines: tuple[MachineRuns, ...]

    @property
    def count(self) -> int:
        return len(self.machines)

    @property
    def runs(self) -> int:
        return sum(len(m.runs) for m in self.machines)

    @property
    def confirmed(self) -> bool:
        return self.count >= 2

    @property
    def atol(self) -> float:
        return max((r.atol for m in self.machines for r in m.runs), default=0.0)

    @property
    def drift(self) -> float:
        return max((r.drift for m in self.machines for r in m.runs), default=0.0)

    def has_run(self, machine: Machine, run: str) -> bool:
        return any(m.machine == machine and any(r.run == run for r in m.runs) for m in self.machines)

    def with_run(self, machine: Machine, run: Run) -> Provenance:
        """This provenance and one more run (of a machine listed or a new one)."""
        if not any(m.machine == machine for m in self.machines):
            return Provenance((*self.machines, MachineRuns(machine, (run,))))
        return Provenance(tuple(MachineRuns(m.machine, (*m.runs, run)) if m.machine == machine else m
                                for m in self.machines))

    def describe(self) -> str:
        cpus = ", ".join(m.machine.cpu for m in self.machines)
        return (f"{self.count} machine{'s' * (self.count != 1)} ({cpus}), "
                f"{self.runs} run{'s' * (self.runs != 1)}")

    def to_dict(self) -> dict:
        return {"count": self.count, "runs": self.runs, "spread": {"atol": self.atol, "drift": self.drift},
                "how": HOW, "list": [m.to_dict() for m in self.machines]}


def distance(curve: list[dict], reference: list[dict]) -> tuple[float, float] | None:
    """(largest per-step difference, |mean residual|) of a curve against a reference's; None when the
    steps differ."""
    ref, got = {p["step"]: p["loss"] for p in reference}, {p["step"]: p["loss"] for p in curve}
    if set(ref) != set(got) or not ref:
        return None
    diffs = [got[s] - ref[s] for s in ref]
    if not all(math.isfinite(d) for d in diffs):
        return None
    return max(abs(d) for d in diffs), abs(sum(diffs) / len(diffs))


def of_reference(doc: dict, where: str | Path) -> Provenance:
    """A reference's machines: as recorded, or, for a reference recorded before references named them,
    the one machine its hardware names and the one run it was written from (its `imported_from`, or
    the --update-baselines run that was not kept)."""
    if FIELD not in doc:
        return _seeded(doc)
    entry = doc[FIELD]
    if not isinstance(entry, dict) or not isinstance(entry.get("list"), list) or not entry["list"]:
        raise RecordError(str(where), f"field {FIELD}.list: missing, empty or not a list")
    out = []
    for i, m in enumerate(entry["list"]):
        try:
            runs = tuple(Run(str(r["run"]), str(r["records"]), str(r.get("recorded_at") or ""), float(r["atol"]),
                             float(r["drift"])) for r in m["runs"])
            out.append(MachineRuns(Machine(str(m["cpu"]), str(m.get("flags") or "")), runs))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(str(where), f"field {FIELD}.list[{i}]: {type(exc).__name__} {exc}") from None
    prov = Provenance(tuple(out))
    if entry.get("count") != prov.count or entry.get("runs") != prov.runs:
        raise RecordError(str(where), f"field {FIELD}.count/runs: {entry.get('count')}/{entry.get('runs')}, but its "
                                      f"list names {prov.count} machine(s) and {prov.runs} run(s)")
    return prov


def _seeded(doc: dict) -> Provenance:
    machine = machine_of_hardware(doc.get("hardware") or {})
    source = doc.get("imported_from")
    if source:
        run, records = Path(source).parent.name, str(Path(source).parent)
        try:  # the record it was imported from names its run id
            run = json.loads((ROOT / source).read_text()).get("run_id") or run
        except (OSError, ValueError):
            pass
    else:
        run, records = "--update-baselines", "not kept"
    return Provenance((MachineRuns(machine, (Run(run, records, str(doc.get("recorded_at") or ""), 0.0, 0.0),)),))


@dataclass(frozen=True)
class Spread:
    """The spread between machines of a kernel class for one method family: the largest of its
    confirmed references' spreads."""

    family: str
    atol: float
    drift: float
    cases: int
    worst_case: str
    machines: int
    runs: int

    def describe(self) -> str:
        return (f"per step +{self.atol:.3g}, drift +{self.drift:.3g}; measured between {self.machines} machines in "
                f"{self.runs} runs over {self.cases} case(s), worst {self.worst_case}")


def spreads(references: list[tuple[dict, Provenance]]) -> dict[str, Spread]:
    """Per family, from the references of one class that two machines or more confirmed."""
    grouped: dict[str, list[tuple[dict, Provenance]]] = {}
    for doc, prov in references:
        if prov.confirmed and doc.get("family"):
            grouped.setdefault(doc["family"], []).append((doc, prov))
    out = {}
    for family, refs in sorted(grouped.items()):
        worst_doc, worst = max(refs, key=lambda r: (r[1].atol, r[1].drift))
        machines = {m.machine for _, p in refs for m in p.machines}
        runs = {(m.machine, r.run) for _, p in refs for m in p.machines for r in m.runs}
        out[family] = Spread(family, worst.atol, max(p.drift for _, p in refs), len(refs),
                             str(worst_doc.get("case_id")), len(machines), len(runs))
    return out
