"""Two runs' environments side by side: the kernel class, packages, then the machine and the suite's commit."""
from __future__ import annotations

import pandas as pd

from suite.records.runs import Run

ENV_KEYS = ("kernel_class", "python", "platform", "host", "cpu_count", "cpu", "cpu.flags", "torch.cpu_capability", "torch.cuda",
            "torch.cudnn", "gpus", "suite.commit")


def flat_environment(env: dict) -> dict[str, str]:
    """An environment as `name -> text`: the kernel class first (a change of runner class explains
    curves and tight numbers before any package does), packages, then the machine and the suite's commit."""
    out = {"kernel_class": _text(env.get("kernel_class"))} if env.get("kernel_class") else {}
    out.update({f"{name}": _text(version) for name, version in (env.get("packages") or {}).items()})
    torch = env.get("torch") or {}
    suite = env.get("suite") or {}
    gpus = env.get("gpus") or []
    cpu = env.get("cpu") or {}
    extra = {"python": env.get("python"), "platform": env.get("platform"), "host": env.get("host"),
             "cpu_count": env.get("cpu_count"),
             "cpu": " ".join(str(v) for v in (cpu.get("vendor"), cpu.get("model")) if v) or None,
             "cpu.flags": " ".join(cpu.get("flags") or []) or None, "torch.cpu_capability": torch.get("cpu_capability"),
             "torch.cuda": torch.get("cuda"), "torch.cudnn": torch.get("cudnn"),
             "gpus": ", ".join(str(g.get("name")) for g in gpus if isinstance(g, dict)) or None,
             "suite.commit": (str(suite.get("commit") or "")[:10] + (" (dirty)" if suite.get("dirty") else ""))
             or None}
    out.update({k: _text(v) for k, v in extra.items()})
    return out


def _text(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


# Fields a run may not know: the kernel class is read from its records (the parent that writes the manifest
# never imports the kernels), so a run stopped before its first record has none. Missing there is unknown,
# not a change: "Kernel class changed: avx512-bf16 → -" told of a switch that nobody had seen.
UNKNOWN = "unknown"
KNOWN_FROM_RECORDS = ("kernel_class",)


def side_by_side(fb: dict[str, str], fc: dict[str, str]) -> list[tuple[str, str, str, bool]]:
    """(field, baseline, candidate, changed) for every field of two flat environments: an absent field
    reads '-', or 'unknown' where the run may not know it, and unknown on either side is no change."""
    out = []
    for k in dict.fromkeys([*fb, *fc]):
        missing = UNKNOWN if k in KNOWN_FROM_RECORDS else "-"
        b, c = fb.get(k, missing), fc.get(k, missing)
        out.append((k, b, c, b != c and not (k in KNOWN_FROM_RECORDS and UNKNOWN in (b, c))))
    return out


def environment_diff(baseline: Run, candidate: Run) -> pd.DataFrame:
    """Every environment field of both runs with whether it changed; packages come first."""
    fb, fc = flat_environment(baseline.environment), flat_environment(candidate.environment)
    rows = [{"field": k, "baseline": b, "candidate": c, "changed": ch, "package": k not in ENV_KEYS}
            for k, b, c, ch in side_by_side(fb, fc)]
    return pd.DataFrame(rows, columns=["field", "baseline", "candidate", "changed", "package"])
