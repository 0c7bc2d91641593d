"""The release sweep's cells as Markdown: one table per package (its releases x the families), every skip
reason, error and moved package once in a legend under it, and a cell not swept yet shown as such."""
from __future__ import annotations

import re

from benchmarks.release_plan import Cell, Family

NOT_SWEPT = "not swept"


class Legend:
    """Texts that recur across cells, each given a short code (s1, e1, m1) the first time it is seen."""

    def __init__(self) -> None:
        self.codes: dict[str, dict[str, str]] = {"s": {}, "f": {}, "e": {}, "m": {}}

    def code(self, kind: str, text: str) -> str:
        table = self.codes[kind]
        if text not in table:
            table[text] = f"{kind}{len(table) + 1}"
        return table[text]

    def lines(self) -> list[str]:
        names = {"s": "skipped", "f": "checks failed", "e": "ERROR", "m": "moved from the lock"}
        return [f"- {code} ({names[k]}): {text}" for k, table in self.codes.items() for text, code in table.items()]


def _general(reason: str) -> str:
    # "(installed: 0.20.0)" differs on every release; the requirement it names does not
    return re.sub(r"\s*\(installed: [^)]*\)", "", reason).removeprefix("needs ").strip()


def case_text(outcome: dict, legend: Legend) -> str:
    status = outcome["status"]
    if status == "passed":
        return "ran"
    if status == "failed":  # it ran; what its checks found is a finding about the release, not a suite error
        return f"ran, checks failed {legend.code('f', outcome['reason'])}"
    if status == "skipped":
        return f"skipped {legend.code('s', _general(outcome['reason']))}"
    return f"**ERROR** {legend.code('e', f'{status}: ' + outcome['reason'] if status != 'error' else outcome['reason'])}"


def cell_text(cell: Cell | None, family: Family, legend: Legend) -> str:
    """One family on one release: one word when its cases agree, else each case's in the family's order."""
    if cell is None:
        return NOT_SWEPT
    texts = [case_text(cell.cases[c], legend) if c in cell.cases else NOT_SWEPT for c in family.cases]
    return texts[0] if len(set(texts)) == 1 else " / ".join(texts)


def moved_text(cells: list[Cell]) -> str:
    """What moved from the lock in a release's environment, and pip's reason (the first cell that says)."""
    for cell in cells:
        if cell.moved:
            moved = ", ".join(f"{n} {v}" for n, v in sorted(cell.moved.items()))
            return moved + (f" (pip: {cell.why_moved})" if cell.why_moved else "")
    return ""


def counts(cells: list[Cell]) -> str:
    n = {s: sum(1 for c in cells if c.status == s) for s in ("ran", "skipped", "error")}
    return f"{n['ran']} ran, {n['skipped']} skipped, {n['error']} ERROR"


def render(cells: list[Cell], fams: list[Family], by_package: dict[str, list[str]], control: dict[str, str],
           floors: dict[str, str]) -> str:
    index = {(c.package, c.version, c.family): c for c in cells}
    legend, out = Legend(), []
    out.append("Families (their representative cases, in the order a split cell lists them):\n")
    out += [f"- `{f.key}`: " + ", ".join(f"`{c}`" for c in f.cases) for f in fams]
    for package, versions in by_package.items():
        mine = [c for c in cells if c.package == package and c.version in versions]  # the window's, not older
        out += ["", f"**{package}** (floor {floors[package]}, lock {control[package]}): {counts(mine)}"
                f"{f'; {sum(1 for v in versions if not any(c.version == v for c in mine))} releases not swept' if mine else ''}",
                "", "| release | " + " | ".join(f"`{f.key}`" for f in fams) + " |",
                "|---|" + "---|" * len(fams)]
        unswept = []
        for version in versions:
            row = [index.get((package, version, f.key)) for f in fams]
            if all(c is None for c in row):  # listed once under the table, not as a row of blanks
                unswept.append(version)
                continue
            moved = moved_text([c for c in row if c is not None])
            label = version + (" (lock)" if version == control[package] else "")
            label += f" {legend.code('m', moved)}" if moved else ""
            out.append(f"| {label} | " + " | ".join(cell_text(c, f, legend) for c, f in zip(row, fams)) + " |")
        if unswept:
            out += ["", f"Not swept yet ({package}): {', '.join(unswept)}."]
    out += ["", *legend.lines()]
    return "\n".join(out) + "\n"
