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


def environment_diff(baseline: Run, candidate: Run) -> pd.DataFrame:
    """Every environment field of both runs with whether it changed; packages come first."""
    fb, fc = flat_environment(baseline.environment), flat_environment(candidate.environment)
    keys = list(dict.fromkeys([*fb, *fc]))
    rows = [{"field": k, "baseline": fb.get(k, "-"), "candidate": fc.get(k, "-"),
             "changed": fb.get(k, "-") != fc.get(k, "-"), "package": k not in ENV_KEYS} for k in keys]
    return pd.DataFrame(rows, columns=["field", "baseline", "candidate", "changed", "package"])
