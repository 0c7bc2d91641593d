"""The README is a front door and docs/ holds the rest: the README stays short, links every docs page,
no relative link in README.md or docs/*.md points at a file that is not there (or outside the
repository), and no page cites files outside the repository.

Each check is a function of a root directory, run on the repository and, broken on purpose, on a
copy under tmp_path, so that a check that can no longer fail is noticed. Plain text only: no torch.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_README_LINES = 250
FORBIDDEN = ("shared/STYLE", "../shared", "../.library")  # files outside the repository

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)


def pages(root: Path) -> list[Path]:
    """README.md and every Markdown page directly under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans (a path in code is not a link)."""
    out, fence = [], None
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):]:
                fence = None
            continue
        out.append(line)
    return CODE_SPAN.sub("", "\n".join(out))


def link_targets(path: Path) -> list[str]:
    """Every link and image target of a Markdown file, inline and reference-style, outside code."""
    text = prose(path.read_text(encoding="utf-8"))
    return LINK.findall(text) + REFERENCE.findall(text)


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith(("#", "//"))


def resolve(page: Path, target: str) -> Path:
    return (page.parent / target.split("#", 1)[0].split("?", 1)[0]).resolve()


def readme_too_long(root: Path, limit: int = MAX_README_LINES) -> list[str]:
    n = len((root / "README.md").read_text(encoding="utf-8").splitlines())
    return [f"README.md has {n} lines, more than {limit}: move the detail to a docs/ page"] if n > limit else []


def pages_not_linked_from_readme(root: Path) -> list[str]:
    readme = root / "README.md"
    linked = {resolve(readme, t) for t in link_targets(readme) if is_relative(t)}
    return [f"docs/{p.name} is not linked from README.md" for p in sorted((root / "docs").glob("*.md"))
            if p.resolve() not in linked]


def broken_links(root: Path) -> list[str]:
    top = root.resolve()
    problems = []
    for page in pages(root):
        for target in link_targets(page):
            if not is_relative(target) or not target.split("#", 1)[0]:
                continue
            where = resolve(page, target)
            name = page.relative_to(root).as_posix()
            if top != where and top not in where.parents:
                problems.append(f"{name}: link {target} points outside the repository")
            elif not where.exists():
                problems.append(f"{name}: link {target} points to {where.relative_to(top).as_posix()}, "
                                f"which does not exist")
    return problems


def outside_citations(root: Path) -> list[str]:
    problems = []
    for page in pages(root):
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for needle in FORBIDDEN:
                if needle in line:
                    problems.append(f"{page.relative_to(root).as_posix()}:{number}: cites {needle!r}, "
                                    f"outside the repository")
    return problems


@pytest.fixture
def copy(tmp_path) -> Path:
    """README.md and docs/ of the repository, copied to be broken."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    for target in {t.split("#", 1)[0] for t in link_targets(ROOT / "README.md") if is_relative(t)}:
        if target and not (tmp_path / target).exists() and (ROOT / target).is_file():
            (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / target, tmp_path / target)
    for page in sorted((ROOT / "docs").glob("*.md")):  # docs pages link into the repository (../cases/, ...)
        for target in link_targets(page):
            if is_relative(target) and target.split("#", 1)[0]:
                src = resolve(page, target)
                if ROOT not in src.parents:
                    continue  # README.md itself, or a link outside the repository (test_every_relative_link_...)
                dst = tmp_path / src.relative_to(ROOT)
                if src.is_file() and not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, dst)
                elif src.is_dir():
                    dst.mkdir(parents=True, exist_ok=True)
    return tmp_path


def test_readme_is_short():
    assert readme_too_long(ROOT) == []


def test_a_long_readme_fails(copy):
    assert readme_too_long(copy) == []
    (copy / "README.md").write_text("line\n" * (MAX_README_LINES + 1))
    assert readme_too_long(copy) == [f"README.md has {MAX_README_LINES + 1} lines, more than {MAX_README_LINES}: "
                                     "move the detail to a docs/ page"]
    (copy / "README.md").write_text("line\n" * MAX_README_LINES)
    assert readme_too_long(copy) == []


def test_every_docs_page_is_linked_from_the_readme():
    assert pages_not_linked_from_readme(ROOT) == []


def test_an_unlinked_docs_page_fails(copy):
    assert pages_not_linked_from_readme(copy) == []
    (copy / "docs" / "orphan.md").write_text("# Orphan\n\nLinked from nowhere; [the README](../README.md).\n")
    assert pages_not_linked_from_readme(copy) == ["docs/orphan.md is not linked from README.md"]
    # a mention in code or a link from another docs page is no link from the README
    with (copy / "README.md").open("a") as f:
        f.write("\nSee `docs/orphan.md`.\n\n```\n[orphan](docs/orphan.md)\n```\n")
    with (copy / "docs" / "cases.md").open("a") as f:
        f.write("\n[orphan](orphan.md)\n")
    assert pages_not_linked_from_readme(copy) == ["docs/orphan.md is not linked from README.md"]
    with (copy / "README.md").open("a") as f:
        f.write("\n- [The orphan](docs/orphan.md#orphan)\n")
    assert pages_not_linked_from_readme(copy) == []


def test_every_relative_link_points_to_a_file():
    assert broken_links(ROOT) == []


def test_a_broken_link_fails(copy):
    assert broken_links(copy) == []
    with (copy / "docs" / "cases.md").open("a") as f:
        f.write("\nMoved from the README without fixing the link: [floors](docs/floors.md#top).\n"
                "A [missing page](nowhere.md), ![a missing image](img/missing.png), "
                "[outside](../../elsewhere.md), [fine](floors.md), [web](https://example.com/x.md), "
                "[here](#cases-and-markers).\n\n```\n[in code](not-checked.md)\n```\n")
    with (copy / "README.md").open("a") as f:
        f.write("\n[renamed](docs/no-such-page.md) and `[in a code span](nor-this.md)`\n\n[ref]: docs/gone.md\n")
    problems = broken_links(copy)
    assert problems == [
        "README.md: link docs/no-such-page.md points to docs/no-such-page.md, which does not exist",
        "README.md: link docs/gone.md points to docs/gone.md, which does not exist",
        "docs/cases.md: link docs/floors.md#top points to docs/docs/floors.md, which does not exist",
        "docs/cases.md: link nowhere.md points to docs/nowhere.md, which does not exist",
        "docs/cases.md: link img/missing.png points to docs/img/missing.png, which does not exist",
        "docs/cases.md: link ../../elsewhere.md points outside the repository",
    ], problems


def test_no_page_cites_files_outside_the_repository():
    assert outside_citations(ROOT) == []


def test_a_citation_outside_the_repository_fails(copy):
    assert outside_citations(copy) == []
    with (copy / "docs" / "layout.md").open("a") as f:
        f.write("\nThe folders follow `shared/STYLE.md`.\n")
    with (copy / "README.md").open("a") as f:
        f.write("\nSee [the style](../shared/notes.md).\n")
    problems = outside_citations(copy)
    assert len(problems) == 2, problems
    assert problems[0].startswith("README.md:") and "'../shared'" in problems[0]
    assert problems[1].startswith("docs/layout.md:") and "'shared/STYLE'" in problems[1]
