"""The HTML report: one self-contained file (inline CSS, pictures as data: URIs, no script, no URL).

Every piece of text from a record (case ids, failure messages, versions) goes through esc().
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from suite.records.runs import Run
from suite.report import answer, causes, compare, findings, plots, unjudged
from suite.report.format import SUMMARY_HEADERS, fmt_band, fmt_change, fmt_value, summary_cells, text
from suite.report.model import Report
from suite.report.select import apart, checkpoint_rows, flagged, gate_summary, invariant_rows

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1b1f24;max-width:1250px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;max-width:100%} td,th{border:1px solid #d0d7de;padding:3px 7px;vertical-align:top;overflow-wrap:break-word}
code.id{display:inline-block;max-width:100%;overflow:hidden;text-overflow:ellipsis;vertical-align:bottom}
details.note summary{cursor:pointer} details.note{max-width:min(420px,32vw)}
th{background:#f6f8fa;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
.worse,.newly-failing,.lost,.unreadable,.unfinished{background:#ffebe9} .better,.fixed{background:#dafbe1} .not-comparable{background:#fff8c5}
.gate-fails{color:#cf222e;font-weight:600} .gate-passes{color:#1a7f37;font-weight:600}
.changed td{background:#fff8c5} .muted{color:#57606a}
.figs{display:flex;flex-wrap:wrap;gap:10px} figure{margin:0;border:1px solid #d0d7de;padding:4px}
figcaption{font:12px ui-monospace,monospace;max-width:300px;overflow-wrap:break-word} img{display:block}
.errors{border-left:4px solid #cf222e;padding:4px 10px;background:#fff5f5}
ul.causes li.unnamed{background:#fff8c5}
"""


def esc(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


ID_MAX = 90  # characters of an id shown before it is ellipsised (the whole id on hover)


def ident(text: object) -> str:
    """An id (a case, a relation, a run) as code that wraps after its slashes, pluses and commas, never
    inside a word; one longer than ID_MAX is cut with an ellipsis and whole in its title (on hover)."""
    whole = "" if text is None else str(text)
    shown = whole if len(whole) <= ID_MAX else whole[:ID_MAX - 1] + "…"
    return f'<code class="id" title="{esc(whole)}">{wrappable(shown)}</code>'


BREAK_AFTER = re.compile(r"([/+,:_])(?=\w)")  # where an id or a path may wrap (a hyphen already may)


def wrappable(text: object) -> str:
    """Escaped text with a line-break opportunity (<wbr>) after each slash, plus, comma, colon and
    underscore inside a token: a long path or id wraps there instead of mid-word."""
    return BREAK_AFTER.sub(r"\1<wbr>", esc(text))


def verdict_class(verdict: str) -> str:
    return esc(verdict.replace(" ", "-"))


def table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
          row_classes: list[str] | None = None) -> str:
    """An HTML table; cells must already be escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, cells in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        tds = "".join(f'<td class="n">{c}</td>' if j in numeric else f"<td>{c}</td>" for j, c in enumerate(cells))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def environment_html(base: Run, cand: Run) -> str:
    diff = compare.environment_diff(base, cand)
    changed = diff[diff["changed"]]
    rows = [[esc(r.field), esc(r.baseline), esc(r.candidate)] for r in changed.itertuples()]
    top = (table(["field", base.name, cand.name], rows, row_classes=["changed"] * len(rows)) if rows
           else "<p>Identical environments: packages, Python, torch, GPUs, host and suite commit.</p>")
    every = table(["field", base.name, cand.name],
                  [[esc(r.field), esc(r.baseline), esc(r.candidate)] for r in diff.itertuples()])
    return top + f"<details><summary>every field</summary>{every}</details>"


NOTE_FOLD = 120  # characters of a note shown before the rest folds away (the table stays on the page)


def note_html(note: object) -> str:
    """A note, escaped; a long one folds into a details element instead of widening the table."""
    t = text(note)
    if len(t) <= NOTE_FOLD:
        return wrappable(t)
    return (f'<details class="note"><summary>{wrappable(t[:NOTE_FOLD])}…</summary>'
            f"{wrappable(t[NOTE_FOLD:])}</details>")


def rows_html(df: pd.DataFrame) -> str:
    rows, classes = [], []
    for _, r in df.iterrows():
        status = r["metric"] == compare.STATUS
        base = r["baseline_status"] if status else fmt_value(r["baseline"], r["unit"])
        cand = r["candidate_status"] if status else fmt_value(r["candidate"], r["unit"])
        rows.append([esc(r["verdict"]), ident(r["case_id"]), wrappable(r["metric"]), esc(text(base)),
                     esc(text(cand)), esc(fmt_change(r["change"])), esc(fmt_band(r)), note_html(r["note"])])
        classes.append(verdict_class(r["verdict"]))
    return table(["verdict", "case", "metric", "baseline", "candidate", "change", "noise band", "note"],
                 rows, numeric={3, 4, 5}, row_classes=classes)


def candidate_html(report: Report, cand: Run, fail_on: tuple[str, ...]) -> str:
    df = report.frame[report.frame["candidate_run"] == cand.name]
    fails, gate = gate_summary(df, fail_on)
    counts = compare.counts(df)
    cases = {v: df[df["verdict"] == v]["case_id"].nunique() for v in counts}
    summary = table(["verdict", "rows", "cases"],
                    [[esc(v), str(n), str(cases[v])] for v, n in counts.items()], numeric={1, 2},
                    row_classes=[verdict_class(v) for v in counts])
    rows = flagged(df, with_apart=False)
    changes = rows_html(rows) if len(rows) else "<p>No case changed beyond noise.</p>"
    for label, apart_rows in apart(df).items():
        changes += (f"<details><summary>{esc(label)} ({len(apart_rows)}, not comparable)</summary>"
                    f"{rows_html(apart_rows)}</details>")
    found = answer.findings(df, fail_on)
    found_html = ('<div class="errors"><ul>' + "".join(
        f"<li{'' if f.gated else ' class=muted'}>{wrappable(f.what)}. <b>Next:</b> {wrappable(f.next_step)}</li>"
        for f in found) + "</ul></div>") if found else ""
    head = (f"<h2>{esc(answer.title(df, report.baseline, cand, fail_on))}</h2>" if len(report.candidates) > 1 else "")
    return (f"{head}{found_html}"
            f'<p class="{"gate-fails" if fails else "gate-passes"}">'
            f'Gate {"fails" if fails else "passes"}{esc(gate)}</p>'
            f"<p>{esc(compare.coverage(df).sentence())}</p>{unjudged_html(cand)}"
            f"<h3>Environment</h3>{environment_html(report.baseline, cand)}"
            f"<h3>Verdicts</h3>{summary}"
            f"<h3>What changed</h3>{changes}{causes_html(causes.of_comparison(df, cand))}"
            f"{findings_html(findings.findings(cand, report.baseline))}"
            f"{invariants_html(df)}{checkpoints_html(cand.compat)}"
            f"<details><summary>every row ({len(df)})</summary>{rows_html(df)}</details>")


def causes_html(found: list[causes.Cause]) -> str:
    """A line per failing or worse case: the checks and relations that failed, or that none names a cause."""
    if not found:
        return ""
    items = "".join(f'<li{" class=unnamed" if c.unnamed else ""}>{ident(c.case_id)} ({esc(c.label)}): {_said_html(c)}'
                    "</li>" for c in found)
    return f'<h3>What named each failure</h3><p>{esc(causes.INTRO)}</p><ul class="causes">{items}</ul>'


def _said_html(cause: causes.Cause) -> str:
    if cause.error:
        return wrappable(cause.error)
    if cause.unnamed:
        return f"<b>{esc(cause.unnamed_text)}</b>"
    return "; ".join((f"{ident(n.check)}: " if n.check else "") + wrappable(n.message)
                     for n in cause.named) + (f" ({esc(cause.also)})" if cause.also else "")


def findings_html(found: list[findings.Finding]) -> str:
    """A row per failure shared by several cases (suite/report/findings.py), most cases first."""
    if not found:
        return ""
    with_baseline = any(f.in_baseline is not None for f in found)
    rows = [[str(len(f.cases)), esc(f.label), note_html(("raised " if f.raised and f.check != findings.ERROR else "") + f.example),
             note_html(", ".join(f.cases)), *([esc(text(f.in_baseline))] if with_baseline else [])] for f in found]
    return ("<h3>Findings: one failure shared by several cases</h3>"
            + table(["cases", "what failed", "how", "which", *(["failed so in the baseline"] if with_baseline else [])],
                    rows, numeric={0, 4}, row_classes=["newly-failing"] * len(rows)))


def invariants_html(df: pd.DataFrame) -> str:
    rows = invariant_rows(df)
    if not len(rows):
        return ""
    cells = [[ident(r.case_id[len(compare.INVARIANT_PREFIX):]),
              esc(f"{'≥' if r.better == 'higher' else '≤'} {r.threshold:.3g} {r.unit}".strip()),
              esc("-" if pd.isna(r.baseline) else f"{r.baseline:.3g}"),
              esc("-" if pd.isna(r.candidate) else f"{r.candidate:.3g}"), esc(r.verdict), note_html(r.note)]
             for r in rows.itertuples()]
    return ("<h3>Invariants</h3>" + table(["relation", "bound", "baseline", "candidate", "verdict", "note"], cells,
                                          numeric={2, 3}, row_classes=[verdict_class(v) for v in rows["verdict"]]))


def checkpoints_html(doc: dict | None) -> str:
    rows = checkpoint_rows(doc)
    if not rows:
        return ""
    cells = [[ident(r[0]), *map(esc, r[1:])] for r in rows]
    classes = ["within-noise" if r[4].startswith(("loads, same", "not applicable")) else "newly-failing" for r in rows]
    return ("<h3>Checkpoint compatibility</h3>" + table(["case", "route", "saved under", "loaded under", "verdict",
                                                         "largest logit difference", "tensor keys", "said"],
                                                        cells, numeric={5}, row_classes=classes))


def unjudged_html(run: Run) -> str:
    """The checks that could not judge some of the run's cases, apart from those that passed."""
    line = unjudged.sentence(unjudged.of_run(run))
    return f'<p class="unjudged">{esc(line)}</p>' if line else ""


def summary_html(report: Report) -> str:
    df = report.frame
    status = df[df["metric"] == compare.STATUS]
    values = df[df["metric"] != compare.STATUS].set_index(["case_id", "metric"])
    rows = []
    for r in status.itertuples():
        cells = [esc(c) for c in summary_cells(values, r.case_id)]
        rows.append([ident(r.case_id), esc(r.status), *cells, esc(r.note or "")])
    env = compare.flat_environment(report.baseline.environment)
    env_rows = [[esc(k), esc(v)] for k, v in env.items()]
    failing = causes.of_run(report.baseline)
    return (f'<p class="counts">{esc(" · ".join(causes.status_counts(report.frame, failing)))}</p>'
            f"{unjudged_html(report.baseline)}<h2>Environment</h2>{table(['field', report.baseline.name], env_rows)}"
            f"<h2>Cases</h2>{table(['case', 'status', *SUMMARY_HEADERS, 'note'], rows, numeric={2, 3, 4, 5, 6})}"
            + causes_html(failing) + findings_html(findings.findings(report.baseline))
            + sidebyside_html(report.baseline))


def sidebyside_html(run) -> str:
    from suite.report import sidebyside

    df = sidebyside.frame(run)
    if df.empty:
        return routes_html(run)
    headers, rows = sidebyside.table_rows(df)
    cells = [[esc(r[0]), ident(r[1]), ident(r[2]), *map(esc, r[3:])] for r in rows]
    srcs = sidebyside.sources(df)
    note = f"<p>Published figures: {esc('; '.join(srcs))}.</p>" if srcs else ""
    return (f"<h2>Side by side</h2><p>{esc(sidebyside.INTRO)}</p>{table(headers, cells, numeric={3, 4, 5, 6, 7})}{note}"
            + routes_html(run))


def routes_html(run) -> str:
    """Which load routes each method's checkpoints went through (docs/checks.md)."""
    from suite.report import sidebyside

    headers, rows, notes = sidebyside.routes_table(run)
    if not rows:
        return ""
    why = "".join(f"<li>n/a {esc(n)}</li>" for n in notes)
    return ("<h3>Load routes per method</h3><p>Each checkpoint loaded back by every route that applies to it: passed "
            "of checked, n/a where the route does not apply (why: below the table).</p>"
            + table(headers, [[esc(c) for c in r] for r in rows]) + (f"<ul>{why}</ul>" if why else ""))


def figures_html(report: Report) -> str:
    runs = report.runs
    case_ids = sorted({cid for run in runs for cid in run.by_case()})
    if report.candidates:  # flagged cases first: they are what the reader came for
        hot = list(dict.fromkeys(flagged(report.frame)["case_id"]))
        case_ids = hot + [c for c in case_ids if c not in hot]
    figs = [f'<figure><figcaption>{wrappable(cid)}</figcaption>'
            f'<img alt="loss curves of {esc(cid)}" src="{plots.data_uri(plots.loss_curves(runs, cid))}"></figure>'
            for cid in case_ids if plots.has_curve(runs, cid)]
    legend = " · ".join(f'<span style="color:{plots.colour(i)}">{"━━" if i == 0 else "╍╍"} {esc(r.name)}</span>'
                        for i, r in enumerate(runs))
    out = [f"<h2>Loss curves</h2><p>{legend}</p><div class=\"figs\">{''.join(figs) or 'no loss curves'}</div>",
           "<h2>Memory, throughput, checkpoint size</h2>"]
    for metric in plots.BARS:
        png = plots.bars(runs, sorted(case_ids), metric)
        if png is not None:
            out.append(f'<img alt="{esc(metric)} per case" src="{plots.data_uri(png)}">')
    return "".join(out)


def unreadable_html(report: Report) -> str:
    if not report.unreadable:
        return ""
    items = "".join(f"<li><code>{esc(run)}/{esc(Path(err.path).name)}</code>: {esc(err.message)}</li>"
                    for run, err in report.unreadable)
    return (f'<div class="errors"><p><b>{len(report.unreadable)} unreadable record(s), skipped</b> '
            f"(the rest of the report is complete):</p><ul>{items}</ul></div>")


def shown_path(path: Path) -> str:
    """A run's folder relative to the working directory when it is under it (no home paths in reports)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def render(report: Report, fail_on: tuple[str, ...] = tuple(compare.GATES.values())) -> str:
    runs = ", ".join(f"<code>{esc(r.name)}</code> ({esc(shown_path(r.path))})" for r in report.runs)
    body = candidate_html if report.candidates else None
    main = ("".join(body(report, c, fail_on) for c in report.candidates) if body else summary_html(report))
    heading = esc(report.heading(fail_on))  # the answer: computed once, shown as the title and the h1
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"data:,\">"
            f"<title>{heading}</title><style>{CSS}</style></head><body>"
            f"<h1>{heading}</h1><p class=\"muted\">runs: {runs}</p>"
            f"{unreadable_html(report)}{main}{figures_html(report)}</body></html>\n")
