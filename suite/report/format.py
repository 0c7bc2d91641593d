"""Formatting numbers, units, changes and text for both renderers."""
from __future__ import annotations

import html
import math

import pandas as pd

NOTE_CHARS = 240  # notes carry failure text; the full text is in the CSV/JSON and the records
# Columns of a one-run summary table: metric -> header.
SUMMARY_METRICS = {"final_loss": "final loss", "train_runtime_s": "train", "tokens_per_s": "tokens/s",
                   "peak_rss_gib": "peak RSS", "checkpoint_bytes": "checkpoint"}
# What a trainer whose loss says little learns, first found wins (a GRPO/RLOO loss is a surrogate near 0;
# the reward it raises is what moved): the one-run summary's "learned" column, named by its label.
LEARNED_METRICS = {"online_reward_final": "reward", "reward_accuracy_final": "pair accuracy",
                   "kto_reward_margin_final": "reward margin", "pairwise_accuracy_final": "pair accuracy"}
SUMMARY_HEADERS = (*SUMMARY_METRICS.values(), "learned")
BARE_UNITS = ("fraction", "reward")  # metric units a labelled cell shows as a bare number


def summary_cells(values: pd.DataFrame, case_id: str) -> list[str]:
    """A case's one-run summary cells: each SUMMARY_METRICS value, then its LEARNED_METRICS one with its label;
    `values` is indexed by (case_id, metric) with value and unit columns."""
    def cell(metric: str, label: str = "") -> str | None:
        if (case_id, metric) not in values.index:
            return None
        value, unit = values.loc[(case_id, metric), "value"], values.loc[(case_id, metric), "unit"]
        if label and unit in BARE_UNITS:  # the label says what it is: "reward 0.86"
            return f"{label} {fmt_number(value)}"
        return f"{label} {fmt_value(value, unit)}".strip()

    learned = next((c for c in (cell(m, label) for m, label in LEARNED_METRICS.items()) if c is not None), "-")
    return [cell(m) or "-" for m in SUMMARY_METRICS] + [learned]


def fmt_number(value: float) -> str:
    """A few significant digits, never scientific notation for the magnitudes a report shows."""
    a = abs(value)
    if a == 0 or a >= 100:
        return f"{value:,.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    if a >= 1e-3:
        return f"{value:.3f}".rstrip("0")
    return f"{value:.2e}"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "B":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.1f} {name}"
        return f"{value:.0f} B"
    if unit == "GiB":
        return f"{value * 1024:.0f} MiB" if abs(value) < 1 else f"{value:.2f} GiB"
    if unit == "nats":
        return f"{value:.4f}"
    if unit == "params":
        return f"{value:,.0f}"
    return f"{fmt_number(value)} {unit}".strip()


def fmt_change(change: float | None) -> str:
    if change is None or (isinstance(change, float) and math.isnan(change)):
        return ""
    if math.isinf(change):
        return "from 0"
    return f"{change * 100:+.1f}%"


def fmt_band(row: pd.Series) -> str:
    threshold = row.get("threshold")
    if threshold is None or (isinstance(threshold, float) and math.isnan(threshold)):
        return ""
    if row["noise"] == "bound":  # an invariant's absolute bound on its discrepancy
        return f"{'≥' if row.get('better') == 'higher' else '≤'} {threshold:.3g} (bound)"
    if threshold == 0:
        band = "any change"
    elif math.isinf(threshold):
        band = "±inf"
    elif threshold >= 1 and row["noise"] == "tolerance":  # a ratio bound: c/b and b/c within 1 + tol
        band = f"×{1 + threshold:.3g}"
    else:
        band = f"±{threshold * 100:.1f}%"
    return f"{band} ({row['noise']})"


def md(text: object, limit: int = NOTE_CHARS) -> str:
    """Text safe in a Markdown table cell (and in the HTML that GitHub renders it to)."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return html.escape(s, quote=False).replace("|", "\\|")


def code(text: str) -> str:
    return f"`{md(text)}`" if "`" not in text else md(text)


def text(value: object) -> str:
    """A cell's text; missing values (None, NaN) read as `-`."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" else str(value)
