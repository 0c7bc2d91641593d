"""The Markdown renderer: a report fit for a CI job summary and a terminal."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.records.runs import Run
from suite.report import answer, causes, compare, findings, unjudged
from suite.report.format import (SUMMARY_HEADERS, code, fmt_band, fmt_change, fmt_number, fmt_value, md, summary_cells,
                                 text)
from suite.report.model import Report
from suite.report.select import (
    LIST_IDS,
    apart,
    checkpoint_rows,
    flagged,
    headline,
    invariant_rows,
)
from suite.versions import HEADLINE


def environment_md(diff: pd.DataFrame) -> list[str]:
    changed = diff[diff["changed"]]
    if not len(changed):
        return ["Environment: identical (packages, Python, torch, GPUs, host, suite commit)."]
    klass = changed[changed["field"] == "kernel_class"]
    pk = changed[changed["package"]]
    other = changed[~changed["package"] & (changed["field"] != "kernel_class")]
    lines = [f"**Kernel class changed**: {md(r.baseline)} → {md(r.candidate)} (the runs crossed kernel classes; "
             f"tight metrics within the measured cross-class band are not a regression: docs/kernel-classes.md)."
             for r in klass.itertuples()]
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


def _started(run: Run) -> str:
    return f"started {(run.manifest or {}).get('started_at') or '?'}"


def candidate_md(report: Report, cand: Run, fail_on: tuple[str, ...]) -> list[str]:
    df = report.frame[report.frame["candidate_run"] == cand.name]
    lines = ([f"### {md(answer.title(df, report.baseline, cand, fail_on))}", ""] if len(report.candidates) > 1
             else [])
    found = answer.findings(df, fail_on)
    if found:
        lines += [*[f"- {md(f.line(), 700)}" for f in found], ""]
    lines += [f"Baseline {code(report.baseline.name)} ({_started(report.baseline)}), candidate {code(cand.name)} "
              f"({_started(cand)}).", "", headline(df, fail_on), "", compare.coverage(df).sentence(), "",
              *unjudged_md(cand)]
    lines += environment_md(compare.environment_diff(report.baseline, cand)) + [""]
    rows = flagged(df, with_apart=False)
    if len(rows):
        lines += changes_table(rows) + [""]
    else:
        lines += ["No case changed beyond noise.", ""]
    lines += causes_md(causes.of_comparison(df, cand))
    info = df[(df["verdict"] == compare.WITHIN_NOISE) & (df["note"].fillna("") != "")
              & (df["metric"] != compare.STATUS) & ~df["case_id"].str.startswith(compare.INVARIANT_PREFIX)
              & ~df["case_id"].str.startswith(compare.COMPAT_PREFIX)]
    if len(info):
        lines += ["Informational metrics that changed (no verdict): " + ", ".join(
            f"{code(r.case_id)} {md(r.metric)} {md(fmt_value(r.baseline, r.unit))} → "
            f"{md(fmt_value(r.candidate, r.unit))}" for r in info.itertuples()) + ".", ""]
    lines += findings_md(findings.findings(cand, report.baseline))
    lines += floors_md(df)
    lines += invariants_md(df)
    lines += checkpoints_md(cand.compat)
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
        relations = quiet[inv & (quiet["metric"] == "discrepancy")]["case_id"].nunique()
        from suite.invariants.relations import RELATIONS

        over = f"{quiet[~inv]['case_id'].nunique()} cases" + (
            f" and {relations} of {len(RELATIONS)} invariant relations" if inv.any() else "")
        lines += [f"{len(quiet)} rows within noise over {over} ({how}).", ""]
    return lines


def causes_md(found: list[causes.Cause]) -> list[str]:
    """A line per failing or worse case: the checks and relations that failed, or that none names a cause."""
    if not found:
        return []
    return ["### What named each failure", "", causes.INTRO, "",
            *[f"- {code(c.case_id)} ({md(c.label)}): {_said_md(c)}" for c in found], ""]


def _said_md(cause: causes.Cause) -> str:
    if cause.error:
        return md(cause.error)
    if cause.unnamed:
        return f"**{md(cause.unnamed_text)}**"
    also = f" ({md(cause.also)})" if cause.also else ""
    return "; ".join((f"{code(n.check)}: " if n.check else "") + md(n.message) for n in cause.named) + also


def findings_md(found: list[findings.Finding]) -> list[str]:
    """One line per failure shared by several cases (suite/report/findings.py), most cases first."""
    if not found:
        return []
    out = ["### Findings: one failure shared by several cases", ""]
    for f in found:
        ids = [code(c) for c in f.cases]
        more = f" and {len(ids) - LIST_IDS} more" if len(ids) > LIST_IDS else ""
        before = (f"; the baseline failed {f.in_baseline} of them the same way" if f.in_baseline
                  else "; none of them failed so in the baseline" if f.in_baseline == 0 else "")
        out.append(f"- **{md(f.headline, limit=400)}** ({', '.join(ids[:LIST_IDS])}{more}{before})")
    return out + [""]


def invariants_md(df: pd.DataFrame) -> list[str]:
    rows = invariant_rows(df)
    if not len(rows):
        return []
    from suite.invariants.relations import RELATIONS

    measured = {c[len(compare.INVARIANT_PREFIX):] for c in rows["case_id"]}
    left = sorted(set(RELATIONS) - measured)
    out = ["### Invariants", "", "Each relation's measured discrepancy (worst over its tests) in both environments, "
           "against its bound (`suite/invariants/relations.py`).", "",
           f"{len(measured & set(RELATIONS))} of {len(RELATIONS)} relations measured"
           + (f"; not measured on either side (left out by the selection, or not applicable): "
              f"{', '.join(code(n) for n in left)}." if left else "."), "",
           "| relation | bound | baseline | candidate | verdict | note |", "|---|---|---:|---:|---|---|"]
    for r in rows.itertuples():
        bound = f"{'≥' if r.better == 'higher' else '≤'} {fmt_number(r.threshold)} {r.unit}".strip()
        out.append(f"| {code(r.case_id[len(compare.INVARIANT_PREFIX):])} | {md(bound)} | "
                   f"{md(text(None if pd.isna(r.baseline) else f'{r.baseline:.3g}'))} | "
                   f"{md(text(None if pd.isna(r.candidate) else f'{r.candidate:.3g}'))} | {r.verdict} | "
                   f"{md(r.note or '')} |")
    return out + [""]


FLOOR_UNITS = ("s", "GiB", "tokens/s", "samples/s", "FLOP/s", "fraction")  # timing and memory metrics


def _floor_text(threshold: float, noise: str) -> str:
    if noise == "tolerance" and threshold >= 1:
        return f"×{1 + threshold:.3g}"
    return f"{threshold * 100:.2g}%"


def floors_md(df: pd.DataFrame) -> list[str]:
    """Per timing and memory metric: the smallest change this pair of runs could have shown."""
    rows = df[df["unit"].isin(FLOOR_UNITS) & df["threshold"].notna() & (df["metric"] != compare.STATUS)
              & df["noise"].isin(["repeats", "tolerance"])]
    if not len(rows):
        return []
    out = ["### Detection floors", "",
           "The smallest change each timing and memory metric could have shown in this comparison: from the "
           "repeats' bootstrap interval where both runs have 3 or more, else the metric's declared tolerance "
           "(a single CPU timing says little: identical runs differ by up to 276x). A verdict of within noise "
           "means the change was smaller than this.", "",
           "| metric | changes of at least | widest (case) | from | cases |", "|---|---:|---|---|---:|"]
    for (name, noise), group in rows.groupby(["metric", "noise"], sort=False):
        widest = group.loc[group["threshold"].idxmax()]
        out.append(f"| {md(name)} | {_floor_text(float(group['threshold'].median()), noise)} | "
                   f"{_floor_text(float(widest['threshold']), widest['noise'])} ({code(widest['case_id'])}) | "
                   f"{'repeats (bootstrap)' if noise == 'repeats' else 'declared tolerance'} | {len(group)} |")
    return out + [""]


def checkpoints_md(doc: dict | None) -> list[str]:
    if doc is None:
        return []
    rows = checkpoint_rows(doc)
    if not rows:
        return ["### Checkpoint compatibility", "", "No checkpoint could be checked (none of "
                f"{', '.join(map(code, doc.get('not_checked') or []))} has a checkpoint on both sides).", ""]
    out = ["### Checkpoint compatibility", "",
           "Each checkpoint saved under one version set, loaded under the other by every load route of its case "
           "(docs/checks.md); the logits against what the saving environment recorded, within the case's reload "
           "tolerance.", "",
           "| case | route | saved under | loaded under | verdict | largest logit difference | tensor keys | said |",
           "|---|---|---|---|---|---:|---|---|"]
    out += [f"| {code(r[0])} | " + " | ".join(md(c) for c in r[1:]) + " |" for r in rows]
    missing = (doc or {}).get("not_checked") or []
    if missing:
        out += ["", f"Not checked (no passing record with its checkpoint on both sides): {', '.join(map(code, missing))}."]
    return out + [""]


def unjudged_md(run: Run) -> list[str]:
    """The checks that could not judge some of the run's cases, apart from those that passed."""
    line = unjudged.sentence(unjudged.of_run(run))
    return [md(line, 2000), ""] if line else []


def summary_md(report: Report) -> list[str]:
    """A one-run page: counts, headline packages, and a row per case."""
    df = report.frame
    status = df[df["metric"] == compare.STATUS]
    pk = report.baseline.environment.get("packages") or {}
    problems = report.integrity if report.integrity is not None else pd.DataFrame(columns=compare.COLUMNS)
    lines = [f"**Unfinished**: {md(r.note)}\n" for r in problems.itertuples() if r.verdict == compare.UNFINISHED]
    lost = problems[problems["verdict"] == compare.LOST]
    if len(lost):
        lines += [f"**{len(lost)} planned case(s) have no record** (lost, or written to another run folder):", "",
                  *[f"- {code(r.case_id)}: {md(r.note)}" for r in lost.itertuples()], ""]
    failing = causes.of_run(report.baseline)
    lines += [" · ".join([*causes.status_counts(df, failing), *([f"{len(lost)} lost"] if len(lost) else [])]),
             "", *unjudged_md(report.baseline),
             "Packages: " + ", ".join(f"{p} {md(pk[p])}" for p in HEADLINE if pk.get(p)) + ".", "",
             "| case | status | " + " | ".join(SUMMARY_HEADERS) + " |",
             "|---|---|" + "---:|" * len(SUMMARY_HEADERS)]
    values = df[df["metric"] != compare.STATUS].set_index(["case_id", "metric"])
    for r in status.itertuples():
        cells = summary_cells(values, r.case_id)
        lines.append(f"| {code(r.case_id)} | {r.status} | " + " | ".join(md(c) for c in cells) + " |")
    # a failing case's reason is said below, by what named it
    notes = status[(status["note"].fillna("") != "") & ~status["status"].isin(compare.FAILING)]
    if len(notes):
        lines += ["", *[f"- {code(r.case_id)} ({r.status}): {md(r.note)}" for r in notes.itertuples()]]
    return (lines + [""] + causes_md(failing) + findings_md(findings.findings(report.baseline))
            + sidebyside_md(report.baseline))


def sidebyside_md(run) -> list[str]:
    """The run's cases that differ by one method step or one feature, side by side."""
    from suite.report import sidebyside

    df = sidebyside.frame(run)
    if df.empty:
        return routes_md(run)
    headers, rows = sidebyside.table_rows(df)
    lines = ["### Side by side", "", sidebyside.INTRO, "",
             "| " + " | ".join(headers) + " |", "|---|---|---|" + "---:|" * (len(headers) - 3)]
    for cells in rows:
        lines.append(f"| {md(cells[0])} | {code(cells[1])} | {code(cells[2])} | " + " | ".join(md(c) for c in cells[3:])
                     + " |")
    srcs = sidebyside.sources(df)
    if srcs:
        lines += ["", "Published figures: " + "; ".join(md(s) for s in srcs) + "."]
    return lines + [""] + routes_md(run)


def routes_md(run) -> list[str]:
    """Which load routes each method's checkpoints went through (docs/checks.md)."""
    from suite.report import sidebyside

    headers, rows, notes = sidebyside.routes_table(run)
    if not rows:
        return []
    return (["### Load routes per method", "", "Each checkpoint loaded back by every route that applies to it: "
             "passed of checked, n/a where the route does not apply (why: below the table).", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            + ["| " + " | ".join(md(c) for c in row) + " |" for row in rows] + [""]
            + [f"- n/a {md(n)}" for n in notes] + [""])


def markdown(report: Report, fail_on: tuple[str, ...] = tuple(compare.GATES.values())) -> str:
    """The whole report as Markdown: fit for `$GITHUB_STEP_SUMMARY` and a terminal."""
    lines = [f"## {md(report.heading(fail_on))}", ""]
    if not report.candidates:
        lines += unreadable_md(report) + summary_md(report)
    for cand in report.candidates:
        lines += candidate_md(report, cand, fail_on)
    if report.candidates:
        lines += unreadable_md(report)
        lines.append("Verdicts: worse and better are beyond the noise band (spread of repeats, else the "
                     "metric's declared tolerance); not comparable means a changed case, another schema or "
                     "a skip; nothing compared means the comparison as a whole compared nothing (it fails the "
                     "gate); broken in both is a relation broken on both sides (gated), known broken one that "
                     "the suite declares broken upstream, where it was measured (not gated).\n")
    return "\n".join(lines).rstrip("\n") + "\n"
