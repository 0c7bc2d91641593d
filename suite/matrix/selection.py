"""Which cases a `-m` / `-k` selection chooses, decided as pytest decides it for tests/test_matrix.py's
items, in-process and before anything is built: upgrade-check, bisect and canary would otherwise make
(or reuse) two environments and run pytest in each only to learn that a typo chose nothing.

The expressions are pytest's own (`_pytest.mark.expression.Expression`, the parser behind -m and -k);
what they are evaluated against is a case's markers (-m) and the names pytest gives its item (-k):
`test_case[<case id>]`, its module, its folder and its markers, matched case-insensitively as
substrings (pytest's KeywordMatcher). tests/test_usage_errors.py holds the two to the same answer.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from suite.errors import UsageError
from suite.matrix.spec import TIERS, Case

# The names pytest matches -k against besides the case's own (tests/test_matrix.py::test_case[<id>]).
ITEM_NAMES = ("tests", "test_matrix.py")


def shard_of(case_id: str, n: int) -> int:
    """The shard (1-based) a case id belongs to when a run is split into n (`--shard I/N`,
    suite/plugin/shard.py): 1 + (sha256 of the id mod n). Here, below the plugin, because a merge of
    shards (suite/records/merge.py) computes a missing shard's cases with it too."""
    digest = hashlib.sha256(case_id.encode()).digest()
    return 1 + int.from_bytes(digest[:8], "big") % n


class SelectionError(UsageError):
    """A -m or -k that pytest would refuse, or that chooses no case."""


@dataclass(frozen=True)
class Selection:
    markexpr: str | None = None  # -m
    keyword: str | None = None  # -k
    extended: bool = False  # --extended: the opt-in tiers too (tiers_asked)

    @classmethod
    def from_args(cls, args: Sequence[str]) -> Selection:
        """The -m and -k of a pytest argument list (["-m", "tiny", "-k", "lora"]); other arguments are ignored."""
        found: dict[str, str] = {}
        for flag, value in zip(args, list(args[1:]) + [""]):
            if flag in ("-m", "-k"):
                found[flag] = value
        return cls(found.get("-m") or None, found.get("-k") or None, "--extended" in args)

    def words(self) -> str:
        """The selection as typed: `-m 'tiny' -k 'lora'`."""
        parts = [f"-m {self.markexpr!r}"] if self.markexpr else []
        return " ".join(parts + ([f"-k {self.keyword!r}"] if self.keyword else [])) or "(no -m, no -k)"


def _compile(text: str, flag: str):
    from _pytest.mark.expression import Expression

    try:
        return Expression.compile(text)
    except SyntaxError as exc:  # pytest's own words for it (_pytest.mark._parse_expression)
        raise SelectionError(f"wrong expression passed to {flag}: {exc.text}: at column {exc.offset}: {exc.msg}") from None


def _keyword_names(case: Case) -> set[str]:
    return {f"test_case[{case.id}]", *ITEM_NAMES, *case.markers}


def matches(case: Case, markexpr, keyword) -> bool:
    """Whether a compiled -m (None: any) and -k (None: any) choose the case."""
    marks = set(case.markers)
    if markexpr is not None and not markexpr.evaluate(lambda name, **kwargs: not kwargs and name in marks):
        return False
    if keyword is not None:
        names = [n.lower() for n in _keyword_names(case)]
        return keyword.evaluate(lambda sub, **kwargs: any(sub.lower() in n for n in names))
    return True


def choose(cases: Iterable[Case], selection: Selection, known_markers: Iterable[str]) -> list[Case]:
    """The cases the selection chooses; SelectionError for a wrong expression, a marker no case can carry,
    or a selection that chooses nothing (each naming what was typed)."""
    cases = list(cases)
    markexpr = _compile(selection.markexpr, "-m") if selection.markexpr else None
    keyword = _compile(selection.keyword, "-k") if selection.keyword else None
    if markexpr is not None:
        idents = markexpr.idents() if hasattr(markexpr, "idents") else frozenset()  # pytest < 9 has none
        unknown = sorted(idents - set(known_markers))
        if unknown:
            raise SelectionError(f"unknown marker(s) in -m {selection.markexpr!r}: {', '.join(unknown)} (no case "
                                 f"carries them; `python -m suite cases` lists every case with its markers)")
    chosen = [c for c in cases if matches(c, markexpr, keyword)]
    left = left_out(chosen, tiers_asked(selection.extended, selection.markexpr))  # as the plugin deselects them
    chosen = [c for c in chosen if not any(c.id in ids for ids in left.values())]
    if not chosen:
        tiers = f"; {left_out_line(left)}" if left else ""
        raise SelectionError(f"no case matches {selection.words()} ({len(cases)} cases declared; "
                             f"`python -m suite cases` lists them with their markers{tiers})")
    return chosen


def tiers_asked(extended: bool, markexpr: str | None) -> set[str]:
    """The opt-in tiers a run asks for: every one with --extended; else those its -m names (`-m extended`,
    `-m "extended and gemma3"`): an -m that names the tier's marker means its cases, and deselecting them would
    leave it choosing nothing. `-m "not extended"` names it too, and its own expression then leaves them out."""
    opt_in = set(TIERS[1:])
    if extended:
        return opt_in
    if not markexpr:
        return set()
    expr = _compile(markexpr, "-m")
    idents = expr.idents() if hasattr(expr, "idents") else set(re.findall(r"[A-Za-z0-9_.+-]+", markexpr))
    return opt_in & set(idents)


def left_out(cases: Iterable[Case], asked: set[str]) -> dict[str, list[str]]:
    """The cases of opt-in tiers not asked for, by tier ({tier: [case ids]}; tiers with none left out)."""
    out: dict[str, list[str]] = {}
    for case in cases:
        if case.opt_in and case.tier not in asked:
            out.setdefault(case.tier, []).append(case.id)
    return out


def tier_count(n: int, noun: str, tier: str) -> str:
    """"36 cases of the extended tier" (noun: case, test)."""
    return f"{n} {noun}{'s' if n != 1 else ''} of the {tier} tier"


def left_out_count(left: dict[str, list[str]]) -> str | None:
    """What the tiers left out, counted ("36 cases of the extended tier"), or None when nothing was."""
    return ", ".join(tier_count(len(ids), "case", tier) for tier, ids in sorted(left.items()) if ids) or None


def left_out_line(left: dict[str, list[str]], tests: dict[str, int] | None = None) -> str | None:
    """The run's line for what its tiers left out ("36 cases of the extended tier left out: --extended runs
    them"; the suite's own tests in a tier counted apart), or None when nothing was."""
    counted = [(tier_count(len(ids), "case", tier), tier) for tier, ids in sorted(left.items()) if ids]
    counted += [(tier_count(n, "test", tier), tier) for tier, n in sorted((tests or {}).items()) if n]
    return "; ".join(f"{what} left out: --{tier} runs them" for what, tier in counted) or None
