"""Checkpoint compatibility across versions: will the adapters (and full checkpoints) trained under
one version set still load, and give the same outputs, under another?

After an upgrade check has run both environments, every selected case that left a checkpoint on
both sides has, beside it, the trained model's logits on the probe input (suite/train/probes.py)
and, in its record, its greedy ids. The checkpoint saved under the baseline is loaded in the
candidate environment by every load route of the case (suite/train/routes.py: PeftModel,
transformers' adapter folder and load_adapter, AutoPeft, merged, the full model, the saved quantized
base), and the candidate's in the baseline (where a downgrade makes sense); the tensor keys are
compared, and each route's logits with the saved ones, within the case's reload tolerance:

    loads, same outputs · loads, outputs differ by X · fails to load: <error> · not applicable: why

The loader runs inside the loading environment: `python -m suite.tools.checkpoints RECORD... --out F`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from suite.paths import CASES, ROOT
from suite.train.backends.registry import backend_for

KIND = "ftsuite.checkpoint-compat"
FILE = "compat/checkpoints.json"  # in the candidate's run folder; suite/records/runs.py reads it
SAME, DIFFER, FAILS = "loads, same outputs", "loads, outputs differ", "fails to load"
NOT_APPLICABLE = "not applicable"


def usable(run_dir: Path, case_ids: tuple[str, ...] | None = None) -> dict[str, Path]:
    """case id -> record file of the cases whose checkpoint and probe logits are on disk (of `case_ids`,
    or every case the run has: the selected ones)."""
    from suite.records.results import read_record
    from suite.train.probes import PROBE_FILE

    out = {}
    for path in sorted(run_dir.glob("*.json")):
        if path.name == "manifest.json":
            continue
        try:
            rec = read_record(path)
        except Exception:  # unreadable records are the comparison's business
            continue
        folder = run_dir.parent / rec.checkpoint_directory if rec.checkpoint_directory else None
        # failed cases count too (a golden curve that moved still saved a checkpoint); errored ones have none
        if ((case_ids is None or rec.case_id in case_ids) and rec.measured and folder and folder.is_dir()
                and (folder.parent / PROBE_FILE).is_file() and rec.case_id not in out):
            out[rec.case_id] = path
    return out


def load_one(record_path: Path) -> list[dict]:
    """In this environment: load the checkpoint of a record by every load route of its case
    (suite/train/routes.py), each against the logits and greedy ids the saving environment recorded."""
    import warnings

    from suite.cases import load_cases
    from suite.records.results import read_record
    from suite.train import args as train_args
    from suite.train import models, probes, routes

    rec = read_record(record_path)
    folder = record_path.parent.parent / rec.checkpoint["directory"]
    base = {"case_id": rec.case_id, "checkpoint": str(folder)}
    try:
        case = next((c for c in load_cases(CASES, mode=rec.mode or "regression") if c.id == rec.case_id), None)
        if case is None or case.fingerprint != rec.fingerprint:
            raise RuntimeError("the case changed since the checkpoint was saved (fingerprint)")
        device, _, dtype = train_args.device_and_dtype(case)
        resolved = models.resolve(case.model.size, arch=case.model.arch, hub_id=case.model.hub_id,
                                  env=case.model.env, path=case.model.path, config=case.model.config)
        backend = backend_for(case)
        # the backend's own context, as the in-run reload's: its head and the kwargs its trainer loaded the base with
        ctx = backend.route_context(case, resolved.path, folder, backend.saved_load_kwargs(case, resolved.path, device,
                                                                                            dtype), device,
                                    probes.load_probe(folder.parent / probes.PROBE_FILE),
                                    (rec.reload or {}).get("generated"), folder.parent / "compat-routes")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outcomes = routes.check_routes(ctx, backend.routes(case))
        said = sorted({str(w.message)[:300] for w in caught if "key" in str(w.message).lower()})
        return [_entry(base, o, case, said) for o in outcomes]
    except Exception as exc:  # noqa: BLE001 - every failure to load is the finding
        return [{**base, "route": "*", "verdict": FAILS, "error": f"{type(exc).__name__}: {exc}"[:600],
                 "traceback": traceback.format_exc()[-3000:]}]


def _entry(base: dict, outcome, case, said: list[str]) -> dict:
    """One route's row: loads with the same outputs (within the case's reload tolerance, plus the merge
    relation's for a merge), with other outputs, or fails; a route that does not apply says why."""
    from suite.invariants.relations import RELATIONS

    out = {**base, "route": outcome.route, "loader": outcome.loader}
    if outcome.status == "not_applicable":
        return {**out, "verdict": NOT_APPLICABLE, "error": outcome.reason}
    if outcome.status == "error":
        return {**out, "verdict": FAILS, "error": outcome.reason}
    extra = RELATIONS[outcome.bound_relation].tolerance if outcome.bound_relation else 0.0
    tolerance = case.checks.logits_atol + extra
    diff = outcome.max_abs_logit_diff
    problems = [f"saved tensors not loaded as saved: {', '.join(outcome.adapter_mismatch[:2])}"] \
        if outcome.adapter_mismatch else []
    if outcome.generation_matches is False:
        problems.append(f"greedy ids {outcome.generated}, the saving side's differ")
    verdict = SAME if diff <= tolerance and not outcome.adapter_mismatch else DIFFER
    return {**out, "max_abs_logit_diff": diff, "tolerance": tolerance, "verdict": verdict,
            "load_warnings": said + problems}


def _folder(record_path: Path) -> Path:
    from suite.records.results import read_record

    return record_path.parent.parent / read_record(record_path).checkpoint["directory"]


def same_keys(a: Path, b: Path) -> str:
    """Whether two checkpoints of one case hold the same tensors (names read from safetensors headers)."""
    from suite.judge.checkpoint import inventory

    ka, kb = {t.name for t in inventory(a).tensors}, {t.name for t in inventory(b).tensors}
    if ka == kb:
        return f"same tensor keys ({len(ka)})"
    only_a, only_b = sorted(ka - kb), sorted(kb - ka)
    return (f"tensor keys differ: {len(only_a)} only in the baseline's (e.g. {', '.join(only_a[:2]) or '-'}), "
            f"{len(only_b)} only in the candidate's (e.g. {', '.join(only_b[:2]) or '-'})")


def load_in(env_python: Path, records: list[Path], out: Path, timeout: float = 1800) -> list[dict]:
    """Run the loader for these records in another environment; a crash is a 'fails to load' each."""
    cmd = [str(env_python), "-m", "suite.tools.checkpoints", *map(str, records), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.is_file():
        return json.loads(out.read_text())
    tail = (proc.stderr or proc.stdout).strip()[-600:]
    return [{"case_id": r.stem, "verdict": FAILS, "error": f"the loader died (exit {proc.returncode}): {tail}"}
            for r in records]


def check(base_run: Path, cand_run: Path, base_python: Path, cand_python: Path,
          case_ids: tuple[str, ...] | None = None, remove: bool = True) -> dict:
    """Both directions, every route, for every case with a checkpoint on both sides (of `case_ids`, or
    every selected case); written into the candidate run (FILE) and returned."""
    base, cand = usable(base_run, case_ids), usable(cand_run, case_ids)
    ids = sorted(set(base) & set(cand))
    t0 = time.time()
    entries = []
    work = cand_run / "compat"
    work.mkdir(parents=True, exist_ok=True)
    keys = {i: same_keys(_folder(base[i]), _folder(cand[i])) for i in ids}
    for saved_in, loaded_in, records, python in (("baseline", "candidate", base, cand_python),
                                                 ("candidate", "baseline", cand, base_python)):
        got = load_in(python, [records[i] for i in ids], work / f"load-in-{loaded_in}.json") if ids else []
        for entry in got:
            entries.append({**entry, "saved_in": saved_in, "loaded_in": loaded_in, "keys": keys.get(entry["case_id"])})
    doc = {"kind": KIND, "schema_version": 2, "cases": ids, "entries": entries, "wall_s": round(time.time() - t0, 1),
           "not_checked": sorted((set(case_ids) if case_ids is not None else set(base) | set(cand)) - set(ids))}
    if remove:  # the checkpoints were kept for this check only
        for found in (base, cand):
            for i in ids:
                shutil.rmtree(_folder(found[i]), ignore_errors=True)
        doc["checkpoints_removed"] = True
    (cand_run / FILE).write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m suite.tools.checkpoints", description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    results = [entry for r in args.records for entry in load_one(r.resolve())]
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
