"""A history's pages: Markdown for a job summary (only the findings, newest first) and one
self-contained HTML page (a timeline per case and metric with a finding, change points marked, and
the per-run values beside it). Text from records goes through md() and esc()."""
from __future__ import annotations

import json
from pathlib import Path

from suite.report import plots
from suite.report.format import code, fmt_change, fmt_value, md
from suite.report.history import Change, Drift, History
from suite.report.html import CSS, esc, table, wrappable


def method(h: History) -> str:
    return (f"change points by Apache Otava (e-divisive split, t-test merge, p < {h.max_pvalue:g}, window "
            f"{h.window}); drifts by Kendall's tau on the run order with the Theil-Sen slope, where a line fits "
            "better than Otava's steps (BIC)")


def _span(h: History) -> str:
    first, last = h.runs[0], h.runs[-1]
    return (f"{len(h.runs)} runs, {code(first.name)} ({first.started[:10] or '-'}) to {code(last.name)} "
            f"({last.started[:10] or '-'})")


def _metric(c: Change | Drift) -> str:
    return f"{c.metric}" + ("" if c.mode == "regression" else f" ({c.mode})")


def markdown(h: History, title: str = "ftsuite history") -> str:
    lines = [f"## {title}: {_span(h)}", "",
             f"{h.series} series analysed ({h.short} with fewer runs than the analysis needs, not analysed); "
             f"{method(h)}.",
             ""]
    if not h.series:
        lines += [f"**Nothing analysed**: {md(h.nothing_analysed())}", ""]
    if h.skipped:
        lines += [f"**{len(h.skipped)} run(s) or record(s) could not be read, skipped:**", ""]
        lines += [f"- {md(s, 400)}" for s in h.skipped] + [""]
    if h.changes:
        lines += [f"### Change points ({len(h.changes)}, newest first)", "",
                  "| | first run after | case | metric | change | before → after | p | what changed that run | "
                  "start here |", "|---|---|---|---|---:|---|---:|---|---|"]
        for c in h.changes:
            env = "; ".join(([c.note] if c.note else []) + c.environment) or "nothing in the environment"
            start = "<br>".join(code(b) for b in c.bisect) or "-"
            lines.append(f"| {c.direction} | {code(c.run)} | {code(c.case_id)} | {md(_metric(c))} | "
                         f"{fmt_change(c.change)} | {fmt_value(c.before, c.unit)} → {fmt_value(c.after, c.unit)} | "
                         f"{c.pvalue:.1e} | {md(env, 400)} | {start} |")
        lines.append("")
    if h.drifts:
        lines += [f"### Drifts ({len(h.drifts)})", "",
                  "| | case | metric | per run | over the series | runs | from → to | Kendall p |",
                  "|---|---|---|---:|---:|---:|---|---:|"]
        for d in h.drifts:
            lines.append(f"| {d.direction} | {code(d.case_id)} | {md(_metric(d))} | {fmt_change(d.per_run)} | "
                         f"{fmt_change(d.total)} | {d.runs} | {code(d.first)} → {code(d.last)} | {d.pvalue:.1e} |")
        lines.append("")
    if not h.changes and not h.drifts:
        lines += [f"No change point and no drift in {h.series} series.", ""]
    return "\n".join(lines)


def _figure(h: History, item: Change | Drift, changes: list[Change]) -> str:
    df = h.values(item.case_id, item.metric, item.mode)
    values, names = df["value"].tolist(), df["run"].tolist()
    indices = df["index"].tolist()
    shifts = [indices.index(c.index) for c in changes if c.index in indices]
    bounds = [0, *sorted(shifts), len(values)]
    segments = [(lo, hi, sum(values[lo:hi]) / (hi - lo)) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
    trend = (item.intercept, item.slope) if isinstance(item, Drift) else None
    image = plots.timeline(values, names, f"{item.case_id}: {_metric(item)}", item.unit, shifts,
                           segments if not trend else [], trend)
    marks = {indices[s] for s in shifts}
    rows = [[esc(n), esc(str(s)[:19]), esc(fmt_value(v, item.unit)), esc(k)]
            for n, s, v, k in zip(names, df["started"], values, df["n"])]
    classes = ["changed" if i in marks else "" for i in indices]
    return (f'<figure><img alt="{esc(item.case_id)} {esc(item.metric)} over runs" src="{plots.data_uri(image)}">'
            f"<figcaption>{wrappable(item.case_id)}: {esc(_metric(item))}</figcaption><details><summary>values per run"
            f"</summary>{table(['run', 'started', 'value', 'records'], rows, {2, 3}, classes)}</details></figure>")


def render(h: History, title: str = "ftsuite history") -> str:
    body = [f"<p class=\"muted\">{esc(len(h.runs))} runs from <code>{esc(h.runs[0].name)}</code> to "
            f"<code>{esc(h.runs[-1].name)}</code>; {esc(h.series)} series analysed; {esc(method(h))}.</p>"]
    if h.skipped:
        body.append('<div class="errors"><p><b>Skipped (could not be read):</b></p><ul>'
                    + "".join(f"<li><code>{esc(s)}</code></li>" for s in h.skipped) + "</ul></div>")
    if h.changes:
        rows, classes = [], []
        for c in h.changes:
            rows.append([esc(c.direction), f"<code>{esc(c.run)}</code>", f"<code>{esc(c.case_id)}</code>",
                         esc(_metric(c)), esc(fmt_change(c.change)),
                         f"{esc(fmt_value(c.before, c.unit))} → {esc(fmt_value(c.after, c.unit))}",
                         esc(f"{c.pvalue:.1e}"),
                         esc("; ".join(([c.note] if c.note else []) + c.environment) or "nothing in the environment"),
                         "<br>".join(f"<code>{esc(b)}</code>" for b in c.bisect) or "-"])
            classes.append(c.direction if c.direction in ("worse", "better") else "not-comparable")
        body.append(f"<h2>Change points ({len(h.changes)}, newest first)</h2>" + table(
            ["", "first run after", "case", "metric", "change", "before → after", "p", "what changed that run",
             "start here"], rows, {4, 6}, classes))
    if h.drifts:
        rows = [[esc(d.direction), f"<code>{esc(d.case_id)}</code>", esc(_metric(d)), esc(fmt_change(d.per_run)),
                 esc(fmt_change(d.total)), esc(d.runs), esc(f"{d.pvalue:.1e}")] for d in h.drifts]
        body.append(f"<h2>Drifts ({len(h.drifts)})</h2>" + table(
            ["", "case", "metric", "per run", "over the series", "runs", "Kendall p"], rows, {3, 4, 5, 6},
            [d.direction for d in h.drifts]))
    if not h.changes and not h.drifts:
        body.append(f"<p>No change point and no drift in {esc(h.series)} series.</p>")
    figures, seen = [], set()
    for item in [*h.changes, *h.drifts]:
        key = (item.case_id, item.metric, item.mode)
        if key in seen:
            continue
        seen.add(key)
        same = [c for c in h.changes if (c.case_id, c.metric, c.mode) == key]
        figures.append(_figure(h, item, same))
    if figures:
        body.append('<h2>Timelines</h2><div class="figs">' + "".join(figures) + "</div>")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"data:,\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><h1>{esc(title)}</h1>"
            + "".join(body) + "</body></html>\n")


def as_json(h: History) -> dict:
    return {"kind": "ftsuite.history", "schema_version": 1, "method": method(h),
            "runs": [{"name": r.name, "path": str(r.path), "started": r.started} for r in h.runs],
            "series": h.series, "short": h.short, "skipped": h.skipped,
            "changes": [{**{k: getattr(c, k) for k in ("case_id", "metric", "mode", "unit", "better", "run",
                                                       "previous", "before", "after", "pvalue", "environment",
                                                       "bisect", "note")}, "change": c.change, "direction": c.direction}
                        for c in h.changes],
            "drifts": [{**{k: getattr(d, k) for k in ("case_id", "metric", "mode", "unit", "better", "first", "last",
                                                      "runs", "per_run", "total", "pvalue")},
                        "direction": d.direction} for d in h.drifts]}


def write(h: History, out_dir: str | Path, title: str = "ftsuite history") -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "history.md", "html": out / "history.html", "json": out / "history.json",
             "csv": out / "history.csv"}
    paths["markdown"].write_text(markdown(h, title))
    paths["html"].write_text(render(h, title))
    paths["json"].write_text(json.dumps(as_json(h), indent=1) + "\n")
    h.frame.to_csv(paths["csv"], index=False)
    return paths
