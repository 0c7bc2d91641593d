"""A report folder: report.md, report.html and the frame as CSV and JSON."""
from __future__ import annotations

from pathlib import Path

from suite.report import compare, html, markdown
from suite.report.model import Report


def write(report: Report, out_dir: str | Path, fail_on: tuple[str, ...] = tuple(compare.GATES.values()),
          ) -> dict[str, Path]:
    """report.md, report.html, comparison.csv and comparison.json in out_dir (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "comparison" if report.candidates else "summary"
    paths = {"markdown": out / "report.md", "html": out / "report.html",
             "csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
    paths["markdown"].write_text(markdown.markdown(report, fail_on))
    paths["html"].write_text(html.render(report, fail_on))
    report.frame.to_csv(paths["csv"], index=False)
    paths["json"].write_text(report.frame.to_json(orient="records", indent=1) + "\n")
    return paths
