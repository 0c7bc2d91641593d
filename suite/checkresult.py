"""What a check returns, and how a check that raises becomes a failed check of its own name: the one
shape shared by the judge's generic checks (suite/judge/checks.py) and the checks each trainer's backend
package declares (suite/train/backends/<trainer>/checks.py). It sits below both: a trainer's checks live
with its backend under suite/train/ and must not import the judge, which imports suite/train/."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol

from suite.errors import exception_line


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str
    value: float | None = None
    bound: float | None = None
    # what the check (or the route, the phase of the child it judges) raised: "ValueError: <first line>";
    # the reports group cases that failed with the same one (suite/report/findings.py)
    raised: str | None = None
    # False: the check could not judge this case (no bound measured for its precision, nothing of what it
    # holds happened in the run) and says why in `message`; it does not fail the case, but the reports count
    # it apart from the checks that passed (suite/report/unjudged.py), so a green says what it did not judge
    judged: bool = True

    def to_dict(self) -> dict:
        doc = asdict(self)
        if doc["raised"] is None:  # the record keeps its old shape for a check that did not raise
            del doc["raised"]
        if doc["judged"]:  # and for a check that judged
            del doc["judged"]
        return doc


def not_judged(name: str, case_id: str, why: str) -> CheckResult:
    """A check that could not judge this case, and why: not a failure, never counted as a pass."""
    return CheckResult(name, True, f"{case_id}: not judged: {why}", judged=False)


class Bounds(Protocol):
    """A kernel class's measured bounds (suite/judge/bands.py's ClassBounds), as a check asks them."""

    name: str

    def bound(self, check: str, method: str) -> tuple[float, str] | None: ...


def raised_result(name: str, case_id: str, what: str, raised: str) -> CheckResult:
    """The failure of a check whose measurement or evaluation raised: named, with the exception."""
    return CheckResult(name, False, f"{case_id}: {what} raised {raised}", raised=exception_line(raised))


def attempt(name: str, case_id: str, what: str, compute: Callable[[], Any], fallback: Any) -> tuple[Any, list[CheckResult]]:
    """(compute(), []) or, where it raises, (fallback, [the failed check `name` carrying the exception])."""
    try:
        return compute(), []
    except Exception as exc:  # noqa: BLE001 - any exception here is that part's finding
        return fallback, [raised_result(name, case_id, what, exception_line(exc))]


def guarded(name: str, case_id: str, evaluate: Callable[[], CheckResult | list[CheckResult]]) -> list[CheckResult]:
    """Evaluate one check (or a group of them, named `name`): what it raises is that check's failure,
    and the case's other checks are still judged."""
    try:
        out = evaluate()
    except Exception as exc:  # noqa: BLE001 - any exception of one check is that check's finding
        return [raised_result(name, case_id, f"the check {name}", exception_line(exc))]
    return out if isinstance(out, list) else [out]


def first_and_last_windows(curve: list[dict], keys: tuple[str, ...], k: int) -> dict[str, tuple[float, float]] | str:
    """Per logged key, the mean of its first k and its last k values over the curve; or why not (a key
    logged fewer than 2k times)."""
    out = {}
    for key in keys:
        series = [p[key] for p in curve if key in p]
        if len(series) < 2 * k:
            return f"{key} logged {len(series)} times, the check needs {2 * k}"
        out[key] = (sum(series[:k]) / k, sum(series[-k:]) / k)
    return out


def windows_rise(name: str, case_id: str, curve: list[dict], keys: tuple[str, ...], k: int, what: str,
                 label: Callable[[str], str] = lambda key: key) -> CheckResult:
    """Passes when every key's mean over the last k logged steps is above its mean over the first k (DPO's
    rewards, a reward model's pairwise accuracy and margin), the message naming each key's two means."""
    windows = first_and_last_windows(curve, keys, k)
    if isinstance(windows, str):
        return CheckResult(name, False, f"{case_id}: {windows}")
    ok = all(last > first for first, last in windows.values())
    parts = [f"{label(key)} {first:.4g} -> {last:.4g}" for key, (first, last) in windows.items()]
    return CheckResult(name, ok, f"{case_id}: {what} {'rose' if ok else 'did not rise'} (mean of the first {k} "
                                 f"logged steps -> the last {k}): {', '.join(parts)}")
