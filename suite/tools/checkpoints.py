"""Checkpoint compatibility across versions: will the adapters (and full checkpoints) trained under
one version set still load, and give the same outputs, under another?

After an upgrade check has run both environments, every case of COMPAT_CASES that passed on both
sides has a checkpoint and, beside it, the trained model's logits on the probe input
(suite/train/probes.py). The checkpoint saved under the baseline is loaded in the candidate
environment the way its backend reloads it (and the candidate's in the baseline, where a
downgrade makes sense), the tensor keys are compared with what the loading versions expect, and
the logits with the saved ones, within the case's reload tolerance:

    loads, same outputs · loads, outputs differ by X · fails to load: <error>

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
COMPAT_CASES = ("tiny-llama/lora/base", "tiny-llama/qlora/base", "tiny-llama/full/base")
SAME, DIFFER, FAILS = "loads, same outputs", "loads, outputs differ", "fails to load"


def usable(run_dir: Path, case_ids: tuple[str, ...] = COMPAT_CASES) -> dict[str, Path]:
    """case id -> record file of the cases whose checkpoint and probe logits are on disk."""
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
        if (rec.case_id in case_ids and rec.measured and folder and folder.is_dir()
                and (folder.parent / PROBE_FILE).is_file() and rec.case_id not in out):
            out[rec.case_id] = path
    return out


def load_one(record_path: Path) -> dict:
    """In this environment: load the checkpoint of a record as its backend reloads it, compare."""
    import warnings

    from suite.cases import load_cases
    from suite.records.results import read_record
    from suite.train import args as train_args
    from suite.train import models, probes

    rec = read_record(record_path)
    folder = record_path.parent.parent / rec.checkpoint["directory"]
    out = {"case_id": rec.case_id, "checkpoint": str(folder)}
    try:
        case = next((c for c in load_cases(CASES) if c.id == rec.case_id), None)
        if case is None or case.fingerprint != rec.fingerprint:
            raise RuntimeError("the case changed since the checkpoint was saved (fingerprint)")
        device, _, dtype = train_args.device_and_dtype(case)
        resolved = models.resolve(case.model.size, arch=case.model.arch, hub_id=case.model.hub_id,
                                  env=case.model.env, path=case.model.path, config=case.model.config)
        saved = probes.load_probe(folder.parent / probes.PROBE_FILE)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            backend = backend_for(case)
            logits, loader = backend.reload(case, resolved.path, folder, backend.reload_kwargs(case, device, dtype))
        out["loader"] = loader
        # what the loading versions said of the keys (peft warns of missing or unexpected adapter keys)
        out["load_warnings"] = sorted({str(w.message)[:300] for w in caught if "key" in str(w.message).lower()})
        diff = (logits - saved).abs().max().item() if logits.shape == saved.shape else float("inf")
        out["max_abs_logit_diff"] = diff
        out["tolerance"] = case.checks.logits_atol
        out["verdict"] = SAME if diff <= case.checks.logits_atol else DIFFER
    except Exception as exc:  # noqa: BLE001 - every failure to load is the finding
        out["verdict"] = FAILS
        out["error"] = f"{type(exc).__name__}: {exc}"[:600]
        out["traceback"] = traceback.format_exc()[-3000:]
    return out


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
          case_ids: tuple[str, ...] = COMPAT_CASES, remove: bool = True) -> dict:
    """Both directions for every usable case; written into the candidate run (FILE) and returned."""
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
    doc = {"kind": KIND, "schema_version": 1, "cases": ids, "entries": entries, "wall_s": round(time.time() - t0, 1),
           "not_checked": sorted(set(case_ids) - set(ids))}
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
    results = [load_one(r.resolve()) for r in args.records]
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
