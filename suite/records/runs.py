"""Finding and loading runs: a folder under results/ (by its id) or any path holding records."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from suite import paths
from suite.errors import RecordError
from suite.records.record import RECORD_KIND, CaseRecord
from suite.records.results import load_run, read_document, read_manifest
from suite.versions import HEADLINE

INVARIANTS_FILE = "invariants/invariants.json"  # written by tests/invariants/conftest.py
INVARIANTS_KIND = "ftsuite.invariants"
COMPAT_FILE = "compat/checkpoints.json"  # written by suite/tools/checkpoints.py into a candidate run
COMPAT_KIND = "ftsuite.checkpoint-compat"



@dataclass
class Run:
    """A run as read from disk: its readable records, and an error for every record that was not."""
    name: str
    path: Path
    manifest: dict | None
    records: list[CaseRecord]
    errors: list[RecordError] = field(default_factory=list)
    invariants: dict | None = None  # invariants/invariants.json: the invariant tests run beside the cases
    compat: dict | None = None  # compat/checkpoints.json: checkpoints loaded across two version sets

    @property
    def environment(self) -> dict:
        """The run's environment, with the kernel class its records ran on (the parent that wrote the
        manifest never imports the kernels; several classes in one run are listed)."""
        env: dict = {}
        if self.manifest and isinstance(self.manifest.get("environment"), dict):
            env = self.manifest["environment"]
        else:
            for rec in self.records:  # a run whose parent crashed has records but maybe no manifest
                env = rec.environment
                break
        classes = sorted({r.kernel_class.name for r in self.records if r.kernel_class is not None})
        return {"kernel_class": ", ".join(classes), **env} if classes else env

    @property
    def planned(self) -> list[str] | None:
        """The case ids the run was asked to run, per its manifest (None: a manifest that does not say)."""
        planned = (self.manifest or {}).get("planned")
        return [str(c) for c in planned] if isinstance(planned, list) else None

    @property
    def left_out(self) -> dict[str, str]:
        """Case id -> the opt-in tier (`extended`) the run left out with it, per its manifest's `left_out`."""
        entry = (self.manifest or {}).get("left_out")
        if not isinstance(entry, dict):
            return {}
        return {str(c): str(tier) for tier, ids in entry.items() if isinstance(ids, list) for c in ids}

    @property
    def listed(self) -> dict[str, list[str]]:
        """Case id -> record file names, per the manifest."""
        listed = (self.manifest or {}).get("records")
        if not isinstance(listed, dict):
            return {}
        return {str(k): [str(n) for n in v] for k, v in listed.items() if isinstance(v, list)}

    def by_case(self) -> dict[str, list[CaseRecord]]:
        """Records grouped by case id; several records of one case are its repeats, in repeat order."""
        out: dict[str, list[CaseRecord]] = {}
        for rec in self.records:
            out.setdefault(rec.case_id, []).append(rec)
        for recs in out.values():
            recs.sort(key=lambda r: r.repeat or 0)
        return dict(sorted(out.items()))


def resolve(arg: str | Path, results_root: str | Path | None = None) -> Path:
    """A run argument as a folder: an existing path, else a run id under the results root."""
    path = Path(arg)
    if path.is_dir():
        return path
    root = Path(results_root) if results_root is not None else paths.results_root()
    for candidate in (root / str(arg), root / "baselines" / str(arg)):
        if candidate.is_dir():
            return candidate
    raise RecordError(str(arg), f"no such run: neither a folder nor a run id under {root}")


def load(arg: str | Path, results_root: str | Path | None = None) -> Run:
    """Every readable record of a run; unreadable ones (and the manifest) become errors, not exceptions."""
    path = resolve(arg, results_root)
    records, errors = load_run(path)
    manifest = None
    if (path / "manifest.json").exists():
        try:
            manifest = read_manifest(path)
        except RecordError as exc:
            errors.append(exc)
    name = (manifest or {}).get("run_id") or path.name
    if not records and not errors and manifest is None:
        raise RecordError(str(path), "holds no result records and no manifest.json")
    extra = {}
    for key, file, kind in (("invariants", INVARIANTS_FILE, INVARIANTS_KIND), ("compat", COMPAT_FILE, COMPAT_KIND)):
        if (path / file).exists():
            try:
                extra[key] = read_document(path / file, kind, f"{key} file")
            except RecordError as exc:
                errors.append(exc)
    return Run(str(name), path, manifest, records, errors, **extra)


def find_runs(results_root: str | Path | None = None) -> list[Path]:
    """Folders under the results root (and results/baselines/) that hold a manifest or case records: runs
    only, not the golden curves and bands of results/baselines/<profile>/ (JSON files too)."""
    root = Path(results_root) if results_root is not None else paths.results_root()
    found = []
    for parent in (root, root / "baselines"):
        if not parent.is_dir():
            continue
        for path in sorted(parent.iterdir()):
            if path.is_dir() and path.name != "baselines" and (
                    (path / "manifest.json").exists() or any(_is_record(p) for p in path.glob("*.json"))):
                found.append(path)
    return found


_RECORD_KIND = re.compile(rb'"kind"\s*:\s*"' + re.escape(RECORD_KIND.encode()) + rb'"')


def _is_record(path: Path) -> bool:
    """Whether a JSON file is a case record, from its head (the kind is among its first fields)."""
    try:
        with open(path, "rb") as fh:
            return bool(_RECORD_KIND.search(fh.read(512)))
    except OSError:
        return False


def describe(path: Path) -> str:
    """One line for `list`: id, start, mode, counts, the stack's versions and the suite's commit."""
    try:
        manifest = read_manifest(path)
    except RecordError as exc:
        return f"{path.name:28s} (no readable manifest: {exc.message}; {len(list(path.glob('*.json')))} files)"
    env = manifest.get("environment") or {}
    pk = env.get("packages") or {}
    counts = ", ".join(f"{n} {k}" for k, n in sorted((manifest.get("counts") or {}).items())) or "no cases"
    stack = " ".join(f"{p}={pk[p]}" for p in HEADLINE if pk.get(p))
    suite = env.get("suite") or {}
    commit = str(suite.get("commit") or "-")[:10] + ("+dirty" if suite.get("dirty") else "")
    started = str(manifest.get("started_at") or "-")[:19]
    note = unfinished_note(manifest, path.name)
    unfinished = "" if manifest.get("finished_at") else f" (unfinished{': ' + note if note else ''})"
    return (f"{str(manifest.get('run_id') or path.name):28s} {started} {manifest.get('mode', '-'):10s} "
            f"{counts}{unfinished} | {stack} | suite {commit}")


def unfinished_note(manifest: dict, name: str) -> str:
    """How an unfinished run is finished (suite/run/resume.py): a rerun into its id runs the planned cases
    that have no record. Empty when the manifest does not say what was planned."""
    planned = manifest.get("planned")
    if not isinstance(planned, list):
        return ""
    recorded = {c for c, names in (manifest.get("records") or {}).items() if names}
    missing = sum(1 for c in planned if c not in recorded)
    run_id = manifest.get("run_id") or name
    if not missing:
        return f"every planned case has a record: rerunning with --run-id {run_id} finishes it"
    return (f"{missing} of {len(planned)} planned cases have no record: rerunning with --run-id {run_id} "
            f"runs them and finishes it")
