"""The invariants' rows: the relations tests/invariants/ measured in each run (holds -> broken is
newly failing) and the invariant tests whose outcome changed; and `distrust`, which takes the
verdict from loss metrics when a relation that says the loss is computed wrongly broke."""
from __future__ import annotations

import math

from suite.report.outcome import errored_note
from suite.report.verdicts import (BETTER, BROKEN_IN_BOTH, ERRORED, FIXED, KNOWN_BROKEN, NEWLY_FAILING, NOT_COMPARABLE,
                                   STATUS, WITHIN_NOISE, WORSE, row)

INVARIANT_PREFIX = "invariants/"  # case ids of invariant rows: invariants/<relation> or invariants/<test>
GROWTH_NOTED = 100.0  # a discrepancy that grows this many times, still within its bound, is noted
GOOD = ("passed", "xfailed", "xpassed")  # a strict xfail's relation is known broken; XPASS: it holds now


def compare_invariants(base: dict | None, cand: dict | None) -> list[dict]:
    """One row per relation measured on either side (holds -> broken is newly failing), and a status
    row per invariant test whose outcome changed."""
    if not base or not cand:
        return []
    return _relation_rows(base, cand) + _test_rows(base, cand)


def _relation_rows(base: dict, cand: dict) -> list[dict]:
    brel, crel = base.get("relations") or {}, cand.get("relations") or {}
    rows = []
    for name in sorted(set(brel) | set(crel)):
        b, c = brel.get(name) or {}, crel.get(name) or {}
        if b.get("measured") is None and c.get("measured") is None:
            continue
        rows.append(_relation_row(name, b, c, base, cand))
    return rows


def _relation_row(name: str, b: dict, c: dict, base: dict, cand: dict) -> dict:
    """A relation's row: its discrepancy on both sides against its bound."""
    rel = c or b
    fields = dict(unit=rel.get("unit") or "", better="higher" if rel.get("at_least") else "lower",
                  baseline=b.get("measured"), candidate=c.get("measured"), threshold=rel.get("tolerance"),
                  noise="bound")
    case_id, bound = f"{INVARIANT_PREFIX}{name}", f"{'≥' if rel.get('at_least') else '≤'} {rel.get('tolerance')}"
    if b.get("measured") is None or c.get("measured") is None:
        side, doc, other = (("baseline", base, cand) if b.get("measured") is None else ("candidate", cand, base))
        return row(case_id, "discrepancy", NOT_COMPARABLE,
                   f"not measured in the {side}: {_why_unmeasured(name, doc, other)}", **fields)
    verdict, note = _relation_verdict(name, b, c, rel, bound)
    if c.get("raised"):  # broken (also) by a member that raised, not (only) by what was measured
        note = (f"holds → broken: {raised_note(c, bound)}" if verdict == NEWLY_FAILING
                else "; ".join(filter(None, (note, raised_note(c, bound)))))
    return row(case_id, "discrepancy", verdict, note, **fields)


def raised_note(side: dict, bound: str) -> str:
    """What the members of a relation's tests that raised said (suite/invariants/members.py)."""
    raised = side.get("raised") or {}
    node, message = next(iter(sorted(raised.items())))
    more = f" (and {len(raised) - 1} more member(s))" if len(raised) > 1 else ""
    return (f"a member raised: {node.split('::')[-1]}: {message}{more}; the other members measured "
            f"{float(side['measured']):.3g} ({bound})")


def _relation_verdict(name: str, b: dict, c: dict, rel: dict, bound: str) -> tuple[str, str]:
    """Holds -> broken is newly failing, broken -> holds fixed, broken on both sides broken in both (or
    known broken, see _broken_in_both); a holding discrepancy that grew a lot is noted."""
    bh, ch = bool(b.get("holds")), bool(c.get("holds"))
    bv, cv = float(b["measured"]), float(c["measured"])
    if bh and not ch:
        return NEWLY_FAILING, f"holds → broken: {cv:.3g} against the bound {bound}: {rel.get('statement')}"
    if ch and not bh:
        return FIXED, f"broken → holds: {bv:.3g} → {cv:.3g} ({bound})"
    if not bh:
        return _broken_in_both(name, bv, cv, rel, bound)
    grew = cv / bv if bv > 0 else (math.inf if cv > 0 else 1.0)
    if not rel.get("at_least") and grew >= GROWTH_NOTED:
        return WITHIN_NOISE, (f"still within its bound {bound}, but grew {'from 0' if bv == 0 else f'{grew:,.0f}x'}: "
                              f"{bv:.3g} → {cv:.3g}")
    return WITHIN_NOISE, ""


def _broken_in_both(name: str, bv: float, cv: float, rel: dict, bound: str) -> tuple[str, str]:
    """Broken on both sides: gated as broken in both, unless the suite declares the relation known broken
    upstream and its discrepancy stays where it was measured (suite/invariants/relations.py)."""
    from suite.invariants.relations import RELATIONS

    known = RELATIONS[name].known_broken if name in RELATIONS else None
    both = f"broken in both runs: {bv:.3g} → {cv:.3g} against the bound {bound}: {rel.get('statement')}"
    if known is None:
        return BROKEN_IN_BOTH, both
    if known.stays(bv, cv, float(rel.get("tolerance") or 0.0)):
        return KNOWN_BROKEN, (f"known broken upstream, where it was measured ({bv:.3g} → {cv:.3g}; measured "
                              f"{known.where_measured()}): {known.why}; see {known.see}")
    return BROKEN_IN_BOTH, (f"{both}; known broken upstream, but its discrepancy moved from where it was measured "
                            f"({known.where_measured()}): {known.why}")


def _test_rows(base: dict, cand: dict) -> list[dict]:
    """A status row per invariant test run on both sides that errored, or whose outcome changed."""
    btests, ctests = base.get("tests") or {}, cand.get("tests") or {}
    berr, cerr = base.get("errors") or {}, cand.get("errors") or {}
    rows = []
    for test in sorted(set(btests) & set(ctests)):
        bo, co = btests[test], ctests[test]
        if co.startswith("errored") or (bo.startswith("errored") and co not in GOOD):
            rows.append(row(f"{INVARIANT_PREFIX}{test.split('::')[-1]}", STATUS, ERRORED,
                            f"{errored_note(bo, berr.get(test, ''), co, cerr.get(test, ''))} ({test})",
                            baseline_status=bo, candidate_status=co))
            continue
        if bo == co:
            continue
        verdict = (FIXED if (bo, co) == ("xfailed", "xpassed")
                   else NEWLY_FAILING if bo in GOOD and co not in GOOD and not co.startswith("skipped")
                   else FIXED if co in GOOD and bo not in GOOD else NOT_COMPARABLE)
        said = f": raised {cerr[test]}" if co == "failed" and cerr.get(test) else ""  # a member that raised
        rows.append(row(f"{INVARIANT_PREFIX}{test.split('::')[-1]}", STATUS, verdict, test + said,
                        baseline_status=bo, candidate_status=co))
    return rows


def _why_unmeasured(relation: str, doc: dict, other: dict) -> str:
    """What happened, on the side that did not measure a relation, to the tests that measured it on the other."""
    tests = (other.get("measured_by") or {}).get(relation) or []
    outcomes, skips = doc.get("tests") or {}, doc.get("skips") or {}
    said = [f"{t.split('::')[-1]} {outcomes.get(t, 'not run')}" + (f" ({skips[t]})" if t in skips else "")
            for t in tests]
    return "; ".join(said) if said else "its tests skipped or failed before measuring"


# Relations that say the loss itself is computed wrongly when they break in the candidate, and the
# metrics that read the loss: a "better" final loss then means nothing.
LOSS_RELATIONS = ("logged_loss", "prompt_mask.loss", "grad_accum.loss", "dpo.grad_accum.loss", "reward.grad_accum.loss",
                  "grpo.grad_accum.loss", "packing.run_loss")
LOSS_METRICS = ("final_loss", "initial_loss", "eval_loss_final", "eval_loss_initial")


def distrust(rows: list[dict]) -> None:
    """Loss metrics judged better or worse while a loss relation broke in the candidate: not comparable,
    untrustworthy, saying which relation (in place)."""
    broken = [r["case_id"][len(INVARIANT_PREFIX):] for r in rows
              if r["case_id"].startswith(INVARIANT_PREFIX) and r["metric"] == "discrepancy"
              and r["case_id"][len(INVARIANT_PREFIX):] in LOSS_RELATIONS and r["verdict"] == NEWLY_FAILING]
    if not broken:
        return
    for r in rows:
        if r["metric"] in LOSS_METRICS and r["verdict"] in (WORSE, BETTER, WITHIN_NOISE):
            was = r["verdict"]
            r["verdict"] = NOT_COMPARABLE
            r["note"] = (f"untrustworthy: {', '.join(broken)} broke, so the loss itself is computed wrongly "
                         f"(by the numbers: {was})" + (f"; {r['note']}" if r.get("note") else ""))
