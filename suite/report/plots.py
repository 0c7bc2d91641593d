"""Pictures for reports: loss curves overlaid per case, bars per metric; PNG bytes, base64 for HTML.

Figures are made with matplotlib's object API on the Agg canvas, so importing this module never
changes the global pyplot backend of whoever imported it.
"""
from __future__ import annotations

import base64
import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from suite.records.record import CaseRecord
from suite.records.runs import Run

# The baseline is black; candidates take these in order (colour-blind-safe Okabe-Ito hues).
COLOURS = ("#000000", "#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
DPI = 72
# Which bars a report draws, and how: metric -> (title, scale factor, axis label). Axes are linear from
# zero: bar lengths compare as the values do (a log axis once made a 1.6x difference look like 20x).
BARS = {
    "peak_rss_gib": ("Peak memory (resident set of the case's process)", 1024.0, "MiB"),
    "tokens_per_s": ("Training throughput", 1.0, "tokens/s"),
    "checkpoint_bytes": ("Checkpoint size", 1 / 1024, "KiB"),
}


def colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _curve(rec: CaseRecord) -> tuple[list[float], list[float]]:
    points = [p for p in rec.loss_curve if isinstance(p, dict)
              and isinstance(p.get("step"), (int, float)) and isinstance(p.get("loss"), (int, float))]
    return [p["step"] for p in points], [p["loss"] for p in points]


def has_curve(runs: list[Run], case_id: str) -> bool:
    return any(_curve(rec)[0] for run in runs for rec in run.by_case().get(case_id, []))


def loss_curves(runs: list[Run], case_id: str) -> bytes:
    """One case's loss curves, every run overlaid (every repeat drawn, the first one labelled)."""
    fig = Figure(figsize=(4.2, 2.6), layout="constrained")
    ax = fig.add_subplot()
    for i, run in enumerate(runs):
        for j, rec in enumerate(run.by_case().get(case_id, [])):
            steps, losses = _curve(rec)
            if steps:
                ax.plot(steps, losses, color=colour(i), lw=1.4 if j == 0 else 0.8, alpha=1.0 if j == 0 else 0.5,
                        ls="-" if i == 0 else "--", label=run.name if j == 0 else None)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("loss", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    _legend_outside(fig, ax)
    return png(fig)


def _legend_outside(fig: Figure, ax, where: str = "upper") -> None:
    """The legend outside the axes (above or below them): it never hides a curve or a bar."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc=f"outside {where} center", ncols=min(len(labels), 3), fontsize=7,
                   frameon=False)


def _value(run: Run, case_id: str, metric: str) -> float | None:
    values = sorted(value for rec in run.by_case().get(case_id, [])
                    if (value := rec.metric_value(metric)) is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def bars(runs: list[Run], case_ids: list[str], metric: str) -> bytes | None:
    """Horizontal bars of one metric per case, one bar per run; None when no run has the metric."""
    title, scale, label = BARS[metric]
    table = [(cid, [_value(run, cid, metric) for run in runs]) for cid in case_ids]
    table = [(cid, vals) for cid, vals in table if any(v is not None for v in vals)]
    if not table:
        return None
    height = 0.8 / len(runs)
    fig = Figure(figsize=(8.5, 1.3 + 0.22 * len(table) * max(len(runs), 2)), layout="constrained")
    ax = fig.add_subplot()
    for i, run in enumerate(runs):
        ys = [k + (i - (len(runs) - 1) / 2) * height for k in range(len(table))]
        xs = [(vals[i] or 0.0) * scale for _, vals in table]
        ax.barh(ys, xs, height=height * 0.95, color=colour(i), label=run.name)
    ax.set_yticks(range(len(table)), [cid for cid, _ in table], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.set_xlabel(label, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    _legend_outside(fig, ax, "lower")
    return png(fig)



def timeline(values: list[float], labels: list[str], title: str, unit: str, shifts: list[int],
             segments: list[tuple[int, int, float]], trend: tuple[float, float] | None = None) -> bytes:
    """One series over runs: its values, each change point (the first run after it) a dashed line,
    each segment's mean a flat line; a drift's Theil-Sen line (intercept, slope) dotted."""
    fig = Figure(figsize=(4.6, 2.2))
    ax = fig.add_subplot()
    xs = list(range(len(values)))
    ax.plot(xs, values, color=COLOURS[2], lw=1.0, marker="o", ms=2.5)
    for at in shifts:
        ax.axvline(at - 0.5, color=COLOURS[1], ls="--", lw=1.2)
    for lo, hi, mean in segments:
        ax.hlines(mean, lo - 0.3, hi - 0.7, color="#000000", lw=1.0, alpha=0.6)
    if trend is not None:
        intercept, slope = trend
        ax.plot(xs, [intercept + slope * x for x in xs], color=COLOURS[1], ls=":", lw=1.4)
    step = max(1, len(labels) // 6)
    ax.set_xticks(xs[::step], [lab[-14:] for lab in labels[::step]], fontsize=6, rotation=20, ha="right")
    ax.set_ylabel(unit, fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)
