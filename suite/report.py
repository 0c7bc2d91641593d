"""Rendering comparisons: Markdown (a CI job summary), CSV/JSON of the frame, and the report folder.

Everything here reads the DataFrames of suite/compare.py; nothing here decides a verdict.
The HTML page is suite/report_html.py.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from suite import compare
from suite.errors import RecordError
from suite.runs import Run

NOTE_CHARS = 240  # notes carry failure text; the full text is in the CSV/JSON and the records
# Packages named in a one-run summary's header, in this order.
HEADLINE_PACKAGES = ("trl", "transformers", "peft", "torch", "accelerate", "bitsandbytes", "unsloth")
# Columns of a one-run summary table: metric -> header.
SUMMARY_METRICS = {"final_loss": "final loss", "train_runtime_s": "train", "tokens_per_s": "tokens/s",
                   "peak_rss_gib": "peak RSS", "checkpoint_bytes": "checkpoint"}


@dataclass
class Report:
    """What a report is made of: the runs, the frame, and every record that could not be read."""
    baseline: Run
    candidates: list[Run]
    frame: pd.DataFrame  # compare.compare(), or compare.summarize() when there is no candidate
    unreadable: list[tuple[str, RecordError]] = field(default_factory=list)
    # A one-run report's own integrity rows (unreadable records, an unfinished run): they gate it.
    integrity: pd.DataFrame | None = None

    @classmethod
    def build(cls, baseline: Run, candidates: list[Run]) -> Report:
        frame = compare.compare(baseline, candidates) if candidates else compare.summarize(baseline)
        unreadable = [(run.name, err) for run in [baseline, *candidates] for err in run.errors]
        integrity = None
        if not candidates:
            rows, _ = compare.integrity(baseline, "candidate")
            integrity = pd.DataFrame(rows, columns=compare.COLUMNS)
        return cls(baseline, candidates, frame, unreadable, integrity)

    @property
    def gate_frame(self) -> pd.DataFrame:
        """The rows the gate reads: the comparison, or a one-run report's integrity rows."""
        return self.frame if self.candidates else self.integrity

    def gate_fails(self, fail_on: tuple[str, ...]) -> bool:
        return compare.gate_fails(self.gate_frame, fail_on)

    @property
    def runs(self) -> list[Run]:
        return [self.baseline, *self.candidates]

    @property
    def title(self) -> str:
        if not self.candidates:
            return f"ftsuite run {self.baseline.name}"
        return f"ftsuite: {', '.join(c.name for c in self.candidates)} vs baseline {self.baseline.name}"


# ---- formatting -------------------------------------------------------------------------------

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


# ---- Markdown ---------------------------------------------------------------------------------

# Status rows that are not news, listed apart by name: what this machine cannot run, and cases
# that one run did not select (a -m/-k subset). Label -> (baseline status, candidate status).
APART = {"skipped in both runs": ("skipped", "skipped"), "only in the baseline run": ("*", None),
         "only in the candidate run": (None, "*")}
LIST_IDS = 12  # ids named in a Markdown line before "... and N more"


def apart(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Label -> the status rows of that kind (labels with no row left out)."""
    if not len(df):
        return {}
    status = df[(df["metric"] == compare.STATUS) & (df["verdict"] == compare.NOT_COMPARABLE)]
    out = {}
    for label, (b, c) in APART.items():
        match = [(status[col].isna() if want is None else status[col].notna() if want == "*"
                  else status[col] == want) for col, want in (("baseline_status", b), ("candidate_status", c))]
        rows = status[match[0] & match[1]]
        if len(rows):
            out[label] = rows
    return out


def flagged(df: pd.DataFrame, with_apart: bool = True) -> pd.DataFrame:
    """Rows that say something: every verdict but `within noise`, except incomparable metric rows
    whose numbers did not move (a changed case's status row already says why)."""
    if not len(df):
        return df
    keep = df["verdict"] != compare.WITHIN_NOISE
    quiet = (df["verdict"] == compare.NOT_COMPARABLE) & (df["metric"] != compare.STATUS) & (
        df["note"].fillna("") == "") & df["baseline"].notna() & df["candidate"].notna()
    keep |= (df["metric"] == compare.STATUS) & (df["verdict"] == compare.WITHIN_NOISE)  # still failing
    if not with_apart:
        for rows in apart(df).values():
            keep &= ~df.index.isin(rows.index)
    out = df[keep & ~quiet].copy()
    # Cases by their most urgent verdict; inside a case the status row, then metrics by urgency.
    out["_order"] = out["verdict"].map(compare.VERDICTS.index)
    out["_case"] = out.groupby(["candidate_run", "case_id"])["_order"].transform("min")
    out["_metric"] = out["metric"] != compare.STATUS
    return out.sort_values(["_case", "case_id", "_metric", "_order"], kind="stable").drop(
        columns=["_order", "_case", "_metric"])


def text(value: object) -> str:
    """A cell's text; missing values (None, NaN) read as `-`."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" else str(value)


def gate_summary(df: pd.DataFrame, fail_on: tuple[str, ...]) -> tuple[bool, str]:
    """(does the gate fail?, the counts that follow the verdict in a headline)."""
    counts = compare.counts(df)
    cases = {v: df[df["verdict"] == v]["case_id"].nunique() for v in counts}
    parts = [f"{n} {v}" + (f" in {cases[v]} cases" if cases[v] != n else "") for v, n in counts.items()]
    rest = f" (fails on: {', '.join(fail_on) or 'nothing'}) · " + (" · ".join(parts) or "nothing compared")
    return compare.gate_fails(df, fail_on), rest


def headline(df: pd.DataFrame, fail_on: tuple[str, ...]) -> str:
    fails, rest = gate_summary(df, fail_on)
    return ("**Gate: fails**" if fails else "**Gate: passes**") + rest


def environment_md(diff: pd.DataFrame) -> list[str]:
    changed = diff[diff["changed"]]
    if not len(changed):
        return ["Environment: identical (packages, Python, torch, GPUs, host, suite commit)."]
    pk = changed[changed["package"]]
    other = changed[~changed["package"]]
    lines = []
    if len(pk):
        lines.append("Package versions changed: " + ", ".join(
            f"**{md(r.field)}** {md(r.baseline)} → {md(r.candidate)}" for r in pk.itertuples()) + ".")
    else:
        lines.append("Package versions: unchanged.")
    if len(other):
        lines.append("Also changed: " + ", ".join(
            f"{md(r.field)} {md(r.baseline)} → {md(r.candidate)}" for r in other.itertuples()) + ".")
    return lines


def changes_table(rows: pd.DataFrame) -> list[str]:
    out = ["| verdict | case | metric | baseline | candidate | change | noise band | note |",
           "|---|---|---|---:|---:|---:|---|---|"]
    for _, r in rows.iterrows():
        if r["metric"] == compare.STATUS:
            base, cand = md(text(r["baseline_status"])), md(text(r["candidate_status"]))
        else:
            base, cand = md(fmt_value(r["baseline"], r["unit"])), md(fmt_value(r["candidate"], r["unit"]))
        out.append(f"| {r['verdict']} | {code(r['case_id'])} | {md(r['metric'])} | {base} | {cand} "
                   f"| {fmt_change(r['change'])} | {md(fmt_band(r))} | {md(r['note'] or '')} |")
    return out


def unreadable_md(report: Report) -> list[str]:
    if not report.unreadable:
        return []
    lines = [f"**{len(report.unreadable)} unreadable record(s), skipped:**", ""]
    lines += [f"- {code(run + '/' + Path(err.path).name)}: {md(err.message)}" for run, err in report.unreadable]
    return lines + [""]


def candidate_md(report: Report, cand: Run, fail_on: tuple[str, ...]) -> list[str]:
    df = report.frame[report.frame["candidate_run"] == cand.name]
    lines = [f"### {code(cand.name)} vs baseline {code(report.baseline.name)}", ""] if len(report.candidates) > 1 else []
    lines += [headline(df, fail_on), ""]
    lines += environment_md(compare.environment_diff(report.baseline, cand)) + [""]
    rows = flagged(df, with_apart=False)
    if len(rows):
        lines += changes_table(rows) + [""]
    else:
        lines += ["No case changed beyond noise.", ""]
    info = df[(df["verdict"] == compare.WITHIN_NOISE) & (df["note"].fillna("") != "")
              & (df["metric"] != compare.STATUS) & ~df["case_id"].str.startswith(compare.INVARIANT_PREFIX)]
    if len(info):
        lines += ["Informational metrics that changed (no verdict): " + ", ".join(
            f"{code(r.case_id)} {md(r.metric)} {md(fmt_value(r.baseline, r.unit))} → "
            f"{md(fmt_value(r.candidate, r.unit))}" for r in info.itertuples()) + ".", ""]
    lines += invariants_md(df)
    for label, rows in apart(df).items():
        ids = [code(c) for c in rows["case_id"]]
        more = f" and {len(ids) - LIST_IDS} more" if len(ids) > LIST_IDS else ""
        lines += [f"{label.capitalize()} ({len(ids)}, not comparable): {', '.join(ids[:LIST_IDS])}{more}.", ""]
    quiet = df[df["verdict"] == compare.WITHIN_NOISE]
    if len(quiet):
        by = quiet["noise"].fillna("tolerance").value_counts().to_dict()
        label = {"repeats": "repeats", "tolerance": "declared tolerance", "bound": "invariant bound"}
        how = ", ".join(f"{n} by {label.get(k, k)}" for k, n in sorted(by.items()))
        inv = quiet["case_id"].str.startswith(compare.INVARIANT_PREFIX)
        over = f"{quiet[~inv]['case_id'].nunique()} cases" + (f" and {quiet[inv]['case_id'].nunique()} invariants"
                                                             if inv.any() else "")
        lines += [f"{len(quiet)} rows within noise over {over} ({how}).", ""]
    return lines


def invariant_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The relation rows of a comparison (empty when neither run ran the invariants)."""
    if not len(df):
        return df
    return df[df["case_id"].str.startswith(compare.INVARIANT_PREFIX) & (df["metric"] == "discrepancy")]


def invariants_md(df: pd.DataFrame) -> list[str]:
    rows = invariant_rows(df)
    if not len(rows):
        return []
    out = ["### Invariants", "", "Each relation's measured discrepancy (worst over its tests) in both environments, "
           "against its bound (`suite/invariants/relations.py`).", "",
           "| relation | bound | baseline | candidate | verdict | note |", "|---|---|---:|---:|---|---|"]
    for r in rows.itertuples():
        bound = f"{'≥' if r.better == 'higher' else '≤'} {fmt_number(r.threshold)} {r.unit}".strip()
        out.append(f"| {code(r.case_id[len(compare.INVARIANT_PREFIX):])} | {md(bound)} | "
                   f"{md(text(None if pd.isna(r.baseline) else f'{r.baseline:.3g}'))} | "
                   f"{md(text(None if pd.isna(r.candidate) else f'{r.candidate:.3g}'))} | {r.verdict} | "
                   f"{md(r.note or '')} |")
    return out + [""]


def summary_md(report: Report) -> list[str]:
    """A one-run page: counts, headline packages, and a row per case."""
    df = report.frame
    status = df[df["metric"] == compare.STATUS]
    counts = status["status"].value_counts().to_dict()
    pk = report.baseline.environment.get("packages") or {}
    problems = report.integrity if report.integrity is not None else pd.DataFrame(columns=compare.COLUMNS)
    lines = [f"**Unfinished**: {md(r.note)}\n" for r in problems.itertuples() if r.verdict == compare.UNFINISHED]
    lines += [" · ".join(f"{counts[s]} {s}" for s in ("passed", "failed", "error", "skipped") if counts.get(s)),
             "", "Packages: " + ", ".join(f"{p} {md(pk[p])}" for p in HEADLINE_PACKAGES if pk.get(p)) + ".", "",
             "| case | status | " + " | ".join(SUMMARY_METRICS.values()) + " |",
             "|---|---|" + "---:|" * len(SUMMARY_METRICS)]
    values = df[df["metric"] != compare.STATUS].set_index(["case_id", "metric"])
    for r in status.itertuples():
        cells = [fmt_value(values.loc[(r.case_id, m), "value"], values.loc[(r.case_id, m), "unit"])
                 if (r.case_id, m) in values.index else "-" for m in SUMMARY_METRICS]
        lines.append(f"| {code(r.case_id)} | {r.status} | " + " | ".join(md(c) for c in cells) + " |")
    notes = status[status["note"].fillna("") != ""]
    if len(notes):
        lines += ["", *[f"- {code(r.case_id)} ({r.status}): {md(r.note)}" for r in notes.itertuples()]]
    return lines + [""] + sidebyside_md(report.baseline)


def sidebyside_md(run) -> list[str]:
    """The run's cases that differ by one method step or one feature, side by side."""
    from suite import sidebyside

    df = sidebyside.frame(run)
    if df.empty:
        return []
    headers, rows = sidebyside.table_rows(df)
    lines = ["### Side by side", "", sidebyside.INTRO, "",
             "| " + " | ".join(headers) + " |", "|---|---|---|" + "---:|" * (len(headers) - 3)]
    for cells in rows:
        lines.append(f"| {md(cells[0])} | {code(cells[1])} | {code(cells[2])} | " + " | ".join(md(c) for c in cells[3:])
                     + " |")
    srcs = sidebyside.sources(df)
    if srcs:
        lines += ["", "Published figures: " + "; ".join(md(s) for s in srcs) + "."]
    return lines + [""]


def markdown(report: Report, fail_on: tuple[str, ...] = tuple(compare.GATES.values())) -> str:
    """The whole report as Markdown: fit for `$GITHUB_STEP_SUMMARY` and a terminal."""
    lines = [f"## {md(report.title)}", ""] + unreadable_md(report)
    if not report.candidates:
        lines += summary_md(report)
    for cand in report.candidates:
        lines += candidate_md(report, cand, fail_on)
    if report.candidates:
        lines.append("Verdicts: worse and better are beyond the noise band (spread of repeats, else the "
                     "metric's declared tolerance); not comparable means a changed case, another schema or "
                     "a skip.\n")
    return "\n".join(lines).rstrip("\n") + "\n"


# ---- files ------------------------------------------------------------------------------------

def write(report: Report, out_dir: str | Path, fail_on: tuple[str, ...] = tuple(compare.GATES.values()),
          ) -> dict[str, Path]:
    """report.md, report.html, comparison.csv and comparison.json in out_dir (created)."""
    from suite import report_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "comparison" if report.candidates else "summary"
    paths = {"markdown": out / "report.md", "html": out / "report.html",
             "csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
    paths["markdown"].write_text(markdown(report, fail_on))
    paths["html"].write_text(report_html.render(report, fail_on))
    report.frame.to_csv(paths["csv"], index=False)
    paths["json"].write_text(report.frame.to_json(orient="records", indent=1) + "\n")
    return paths
