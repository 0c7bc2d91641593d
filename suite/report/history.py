"""History: runs as a time series, with change points and what changed at each.

The nightly compares one night with a committed baseline; a slow drift never crosses a pairwise
tolerance and a step hides among noisy nights. Here every (case, metric, mode) is a series over the
runs in start order, and Apache Otava (the change-point detection of continuous performance
engineering: e-divisive means split, then a Student's t-test merge, Fleming et al. 2023) finds
where its level shifted, each shift judged against the series' own noise. A series whose values
move steadily is a drift: Kendall's tau on the run order is significant (scipy), and a line fits
it better than the steps Otava found (BIC of the two least-squares fits); its size is the
Theil-Sen slope.

For each change point: the metric, the size and its direction in the metric's declared sense
(suite/judge/metrics.py), the first run after it, what changed in the environment between the two
runs on either side, and the `bisect` command that starts the hunt.
"""
from __future__ import annotations

import fnmatch
import glob
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from suite.errors import RecordError, SuiteError
from suite.judge.metrics import METRICS
from suite.records import runs as runs_mod
from suite.records.runs import Run
from suite.report import envdiff
from suite.report.compare import cross_class_band, flat_environment
from suite.versions import STACK

# Otava's significance (a shift whose t-test p-value is above this is noise) and the window of its
# split step. 1e-4, not Otava's own 1e-3: a history tests hundreds of series (cases x metrics), and
# on flat series of 30 nights with 5% noise 1e-3 put a change point in 12 of 300, 1e-4 in none,
# while a 10% step still shows within two nights in 191 of 200 (tests/report/test_history.py).
# MIN_POINTS: a series shorter than this is listed, not analysed.
MAX_PVALUE = 0.0001
WINDOW = 30
MIN_POINTS = 6
# A drift: Kendall's tau on the run order below this p-value, and the Theil-Sen line moving the level
# by at least the metric's practical minimum (Metric.min_change) over the series.
DRIFT_PVALUE = 0.001
USABLE = ("passed", "failed")  # a record whose metrics were measured (an error or a skip measured nothing)


class HistoryError(SuiteError):
    """No runs to make a history of."""


@dataclass(frozen=True)
class RunPoint:
    """One run of the history: where it is, when it started, its environment."""
    name: str
    path: Path
    started: str
    environment: dict
    fingerprints: dict[str, str]  # case id -> fingerprint
    methods: dict[str, str]  # case id -> method, as its records say


@dataclass(frozen=True)
class Change:
    """A shift of a series' level at `index` (the first run after it)."""
    case_id: str
    metric: str
    mode: str
    unit: str
    better: str
    index: int
    run: str  # the first run after the shift
    previous: str  # the last run before it
    before: float  # mean of the segment before
    after: float  # mean of the segment after
    pvalue: float
    environment: list[str]  # what changed between `previous` and `run`
    bisect: list[str]  # the command lines that start the hunt
    note: str = ""  # a kernel-class switch that explains it (within the measured cross-class band)

    @property
    def change(self) -> float:
        return self.after / self.before - 1 if self.before else math.inf

    @property
    def direction(self) -> str:
        """worse / better in the metric's declared sense; changed for a metric with no better side,
        or for a shift that a switch of kernel class explains."""
        if self.better not in ("lower", "higher") or self.after == self.before or self.note:
            return "changed"
        up = self.after > self.before
        return "worse" if up == (self.better == "lower") else "better"


@dataclass(frozen=True)
class Drift:
    """A steady move of a series: its Theil-Sen slope, per run and over the series."""
    case_id: str
    metric: str
    mode: str
    unit: str
    better: str
    first: str
    last: str
    runs: int
    per_run: float  # relative change per run, of the line's level at the first run
    total: float  # relative change over the series
    pvalue: float  # Kendall's tau
    intercept: float  # the Theil-Sen line: value at the first run, and per run
    slope: float

    @property
    def direction(self) -> str:
        if self.better not in ("lower", "higher"):
            return "changed"
        return "worse" if (self.total > 0) == (self.better == "lower") else "better"


@dataclass
class History:
    runs: list[RunPoint]
    frame: pd.DataFrame  # one row per run x case x mode x metric: run, index, started, case_id, mode, metric, value, n
    changes: list[Change]
    drifts: list[Drift]
    skipped: list[str] = field(default_factory=list)  # runs and records that could not be read, named
    short: int = 0  # series with fewer than MIN_POINTS runs, not analysed
    series: int = 0  # series analysed
    max_pvalue: float = MAX_PVALUE
    window: int = WINDOW

    def nothing_analysed(self) -> str:
        """Why no series was analysed, with how many runs a history needs (a gate that analysed nothing
        fails)."""
        return (f"a series needs at least {MIN_POINTS} runs that measured it; {len(self.runs)} run(s) gave "
                f"{self.short} series, none that long. Add runs (nightlies) until every case has {MIN_POINTS}.")

    def values(self, case_id: str, metric: str, mode: str) -> pd.DataFrame:
        df = self.frame
        return df[(df.case_id == case_id) & (df.metric == metric) & (df["mode"] == mode)].sort_values("index")


def expand(args: list[str], results_root: str | Path | None = None) -> tuple[list[Path], list[str]]:
    """Run folders from run ids, folders and globs; a folder that is no run but holds runs (a
    nightly's downloaded artifacts, say) stands for every run under it. Returns (folders, problems)."""
    found: list[Path] = []
    problems: list[str] = []
    for arg in args:
        if any(ch in arg for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(arg) if Path(p).is_dir())
            if not matches:
                problems.append(f"{arg}: the pattern matches no folder")
            for m in matches:
                found.extend(_runs_under(m) or [m])
            continue
        try:
            path = runs_mod.resolve(arg, results_root)
        except RecordError as exc:
            problems.append(str(exc))
            continue
        found.extend(_runs_under(path) or [path])
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, problems


def _runs_under(path: Path, depth: int = 4) -> list[Path]:
    """The runs in a folder: itself when it holds a manifest, else the folders below that do (a run's
    report folder beside it, with its own JSON files, is no run)."""
    if (path / "manifest.json").exists():
        return [path]
    if depth == 0:
        return []
    return [r for sub in sorted(p for p in path.iterdir() if p.is_dir()) for r in _runs_under(sub, depth - 1)]


def _started(run: Run) -> str:
    started = (run.manifest or {}).get("started_at")
    if isinstance(started, str) and started:
        return started
    times = [r.started_at for r in run.records if r.started_at is not None]
    return min(times) if times else ""


def load(args: list[str], results_root: str | Path | None = None, cases: str = "*",
         metrics: str = "*") -> tuple[list[Run], list[RunPoint], pd.DataFrame, list[str]]:
    """The runs in start order and the frame of their values (the median of a case's repeats)."""
    folders, skipped = expand(args, results_root)
    loaded: list[Run] = []
    for folder in folders:
        try:
            run = runs_mod.load(folder)
        except RecordError as exc:
            skipped.append(f"run {exc}")
            continue
        skipped.extend(f"record {err}" for err in run.errors)
        if not run.records:
            skipped.append(f"run {folder}: no readable record")
            continue
        loaded.append(run)
    loaded.sort(key=lambda r: (_started(r), r.name))
    points, rows = [], []
    for i, run in enumerate(loaded):
        prints: dict[str, str] = {}
        methods: dict[str, str] = {}
        for case_id, recs in run.by_case().items():
            if not fnmatch.fnmatchcase(case_id, cases):
                continue
            for mode in sorted({str(r.mode) for r in recs}):
                usable = [r for r in recs if r.mode == mode and r.status in USABLE]
                if usable:
                    prints[case_id] = usable[0].fingerprint
                    if usable[0].method:
                        methods[case_id] = usable[0].method
                for name in sorted({m for r in usable for m in r.metrics}):
                    if not fnmatch.fnmatchcase(name, metrics):
                        continue
                    vals = [v for r in usable if _finite(v := r.metric_value(name))]
                    if vals:
                        rows.append({"run": run.name, "index": i, "started": _started(run), "case_id": case_id,
                                     "mode": mode, "metric": name, "value": float(statistics.median(vals)),
                                     "n": len(vals)})
        points.append(RunPoint(run.name, run.path, _started(run), run.environment, prints, methods))
    frame = pd.DataFrame(rows, columns=["run", "index", "started", "case_id", "mode", "metric", "value", "n"])
    return loaded, points, frame, skipped


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def environment_diff(a: RunPoint, b: RunPoint, case_id: str | None = None) -> list[str]:
    """What changed from run a to run b, field by field as a comparison report's environment table
    names them (suite/report/compare.py: packages first, then the machine and the suite's commit),
    and the case's own definition."""
    fa, fb = flat_environment(a.environment or {}), flat_environment(b.environment or {})
    out = [f"{k} {va} → {vb}" for k, va, vb, changed in envdiff.side_by_side(fa, fb) if changed]
    if case_id and a.fingerprints.get(case_id) != b.fingerprints.get(case_id):
        out.append(f"the case's definition (fingerprint {str(a.fingerprints.get(case_id))[:8]} → "
                   f"{str(b.fingerprints.get(case_id))[:8]})")
    return out


def bisect_lines(a: RunPoint, b: RunPoint, case_id: str) -> list[str]:
    """The command that starts the hunt for each changed package of the stack; the suite's commits."""
    pa, pb = (a.environment or {}).get("packages") or {}, (b.environment or {}).get("packages") or {}
    out = []
    for name in STACK:
        good, bad = pa.get(name), pb.get(name)
        if good and bad and good != bad and name != "torch":
            out.append(f'python -m suite bisect --package {name} --good {good} --bad {bad} -k "{case_id}"')
    ca, cb = (flat_environment(e or {})["suite.commit"].split()[0] for e in (a.environment, b.environment))
    if "-" not in (ca, cb) and ca != cb:
        out.append(f"git log --oneline {ca}..{cb}")
    return out


def _class_switch(a: RunPoint, b: RunPoint, case_id: str, metric: str, diff: float) -> str:
    """Why a shift of a tight metric is no regression: the runs crossed kernel classes and it moved by
    no more than the measured cross-class band (suite/judge/bands.py); "" otherwise."""
    ka, kb = ((p.environment or {}).get("kernel_class") for p in (a, b))
    if not ka or not kb or ka == kb:
        return ""
    method = b.methods.get(case_id) or a.methods.get(case_id)  # the records say it; no case file is read
    band = cross_class_band(metric, method) if method else None
    if band is None or abs(diff) > band[0]:
        return ""
    return f"kernel class switched ({ka} -> {kb}): within the measured cross-class band for {method} ({band[0]:.3g})"


def change_points(values: list[float], max_pvalue: float = MAX_PVALUE, window: int = WINDOW) -> list[tuple[int, float]]:
    """Otava's change points of a series: (index of the first value after the shift, p-value)."""
    try:
        from otava.analysis import compute_change_points
    except ImportError as exc:
        raise HistoryError(f"Apache Otava is not importable ({exc}): install it as the README's set-up does, "
                           "pip install --no-deps -r requirements/no-deps.txt") from None

    if len(set(values)) == 1:
        return []
    points, _ = compute_change_points(values, window_len=window, max_pvalue=max_pvalue)
    return [(int(cp.index), float(cp.stats.pvalue)) for cp in points]


def _bic(rss: float, n: int, k: int) -> float:
    return n * math.log(max(rss, 1e-300) / n) + k * math.log(n)


def drift(values: list[float], shifts: list[int] | None = None) -> tuple[float, float, float] | None:
    """(Theil-Sen intercept, slope, Kendall p-value) when the series moves steadily, else None.

    Steady: the run order and the values are associated (Kendall's tau, scipy), and a line explains
    the series better than the steps Otava found in it (`shifts`; BIC of the two least-squares fits:
    a step also makes tau significant, a ramp also gets split by Otava)."""
    from scipy import stats

    n = len(values)
    if n < 3 or len(set(values)) == 1:
        return None
    xs = list(range(n))
    tau = stats.kendalltau(xs, values)
    if not (tau.pvalue < DRIFT_PVALUE):
        return None
    slope, intercept, _, _ = stats.theilslopes(values, xs)
    if shifts is None:
        shifts = [i for i, _ in change_points(values)]
    if shifts:
        line = stats.linregress(xs, values)
        rss_line = sum((v - (line.intercept + line.slope * x)) ** 2 for x, v in zip(xs, values))
        bounds = [0, *sorted(shifts), n]
        rss_steps = sum((v - statistics.fmean(values[lo:hi])) ** 2
                        for lo, hi in zip(bounds, bounds[1:]) for v in values[lo:hi])
        segments = len(bounds) - 1
        if _bic(rss_steps, n, 2 * segments - 1) <= _bic(rss_line, n, 2):
            return None  # steps, not a slope: the change points say where
    return float(intercept), float(slope), float(tau.pvalue)


def analyse(args: list[str], results_root: str | Path | None = None, cases: str = "*", metrics: str = "*",
            max_pvalue: float = MAX_PVALUE, window: int = WINDOW) -> History:
    """The history of the runs named: every series with MIN_POINTS or more runs, its change points
    (Otava) or its drift; metrics without a better side (counts, the loss's start) are left out."""
    _, points, frame, skipped = load(args, results_root, cases, metrics)
    if not points:
        raise HistoryError("no readable run among " + ", ".join(args) + (": " + "; ".join(skipped) if skipped else ""))
    by_name = {p.name: p for p in points}
    changes, drifts, short, analysed = [], [], 0, 0
    for (case_id, mode, name), df in frame.groupby(["case_id", "mode", "metric"], sort=True):
        metric = METRICS.get(name)
        if metric is None or metric.better not in ("lower", "higher"):
            continue
        df = df.sort_values("index")
        if len(df) < MIN_POINTS:
            short += 1
            continue
        analysed += 1
        values, names = df["value"].tolist(), df["run"].tolist()
        pvalues = dict(change_points(values, max_pvalue, window))
        found = drift(values, sorted(pvalues))
        if found is not None:
            intercept, slope, p = found
            per_run = slope / intercept if intercept else math.inf
            total = per_run * (len(values) - 1)
            if abs(total) >= min(metric.min_change, metric.rel_tolerance) or metric.rel_tolerance == 0:
                drifts.append(Drift(case_id, name, mode, metric.unit, metric.better, names[0], names[-1],
                                    len(values), per_run, total, p, intercept, slope))
            continue
        bounds = [0, *sorted(pvalues), len(values)]
        for k in range(1, len(bounds) - 1):
            lo, at, hi = bounds[k - 1], bounds[k], bounds[k + 1]
            before, after = statistics.fmean(values[lo:at]), statistics.fmean(values[at:hi])
            prev, run = by_name[names[at - 1]], by_name[names[at]]
            changes.append(Change(case_id, name, mode, metric.unit, metric.better, int(df["index"].iloc[at]),
                                  run.name, prev.name, before, after, pvalues[at],
                                  environment_diff(prev, run, case_id), bisect_lines(prev, run, case_id),
                                  _class_switch(prev, run, case_id, name, after - before)))
    changes.sort(key=lambda c: (-c.index, c.case_id, c.metric))
    return History(points, frame, changes, drifts, skipped, short, analysed, max_pvalue, window)
