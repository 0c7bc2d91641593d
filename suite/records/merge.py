"""One night from its shards: the run folders of `--shard I/N` (one per runner) merged into one run that
`report`, `compare`, `history` and the gate read as any other (`python -m suite merge-shards`).

The merge checks that the folders are slices of one plan (the same N, each I at most once, the same whole
plan of case ids, mode, suite commit and stack: `SAME_PACKAGES`), that they are disjoint (no case has
records in two folders) and that each record belongs to its folder's slice; any of these, an unreadable
record or a listed record not on disk is an error naming the folders or the file, and nothing is written.
A slice with no folder (its runner died before it wrote one) is not an error: its planned cases, known from
the others' whole plan and `shard_of`, stay planned with no record, so the merged run's report calls them
`lost` and its gate fails. Records are copied byte for byte, never moved or changed; whatever else a shard
folder holds (its manifest, junit.xml, pytest-benchmark.json, case folders) is copied under
`shards/<I>of<N>/`, so nothing recorded is lost.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from suite.errors import RecordError, SuiteError
from suite.matrix.selection import shard_of
from suite.records.record import SCHEMA_VERSION, CaseRecord
from suite.records.results import MANIFEST_KIND, check_run_id, read_manifest, read_record, write_json_atomic
from suite.records.runs import COMPAT_FILE, INVARIANTS_FILE

# What must be equal between the shards of one night (the runners' hosts, CPUs and GPUs may differ:
# the cases of one slice stay on one runner night after night, so their histories are still one machine's).
SAME_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes")


class MergeError(SuiteError):
    """Shard folders that are not slices of one run, overlap, or hold a record that cannot be read."""


@dataclass(frozen=True)
class Shard:
    """One shard folder as the merge reads it: its manifest, slice, whole plan and records by case."""
    path: Path
    manifest: dict
    index: int
    count: int
    plan: frozenset[str]
    records: dict[str, list[tuple[Path, CaseRecord]]]

    @property
    def label(self) -> str:
        return f"{self.index}of{self.count}"


@dataclass(frozen=True)
class Merged:
    """What a merge wrote: the folder, the shards merged, the slices with no folder and their cases."""
    path: Path
    shards: list[Shard]
    missing: dict[int, list[str]]  # slice index -> its planned case ids (all lost)
    records: int

    def describe(self) -> str:
        count = self.shards[0].count
        line = (f"merged {len(self.shards)} of {count} shards into {self.path}: {self.records} records of "
                f"{len(self.shards[0].plan)} planned cases")
        for index, cases in sorted(self.missing.items()):
            line += (f"; shard {index}/{count} has no folder: its {len(cases)} planned case(s) are lost"
                     + (" (the report's gate fails on them)" if cases else ""))
        return line


def read_shard(path: Path) -> Shard:
    """A shard folder: its manifest must say which slice it is (`shard`), and every record must read."""
    manifest = read_manifest(path)
    entry = manifest.get("shard")
    where = str(path / "manifest.json")
    if not isinstance(entry, dict):
        raise MergeError(f"{where}: field shard: missing; not a run of `--shard I/N` (or written by an ftsuite "
                         f"older than the merge, which did not record the whole plan)")
    index, count, plan = entry.get("index"), entry.get("count"), entry.get("planned_all")
    if not (isinstance(count, int) and isinstance(index, int) and 1 <= index <= count and isinstance(plan, list)):
        raise MergeError(f"{where}: field shard: expected index, count (1 <= index <= count) and planned_all, "
                         f"got {entry!r}")
    return Shard(path, manifest, index, count, frozenset(map(str, plan)), _records(path, manifest))


def _records(path: Path, manifest: dict) -> dict[str, list[tuple[Path, CaseRecord]]]:
    """Every record file of the folder by case id; an unreadable one, or one listed and absent, is an error."""
    out: dict[str, list[tuple[Path, CaseRecord]]] = {}
    for file in sorted(path.glob("*.json")):
        if file.name == "manifest.json":
            continue
        try:
            record = read_record(file)
        except RecordError as exc:
            raise MergeError(f"{exc}; the merge copies every record or none (fix or remove the file)") from None
        out.setdefault(record.case_id, []).append((file, record))
    listed = manifest.get("records") if isinstance(manifest.get("records"), dict) else {}
    for case_id, names in listed.items():
        for name in names if isinstance(names, list) else []:
            if not (path / str(name)).is_file():
                raise MergeError(f"{path / str(name)}: listed in {path / 'manifest.json'} for {case_id}, "
                                 f"but not on disk")
    return out


def check_one_plan(shards: list[Shard]) -> None:
    """The same N, each slice once, one whole plan, mode, suite commit and stack; else an error naming both."""
    first = shards[0]
    seen: dict[int, Shard] = {}
    for shard in shards:
        if shard.count != first.count:
            raise MergeError(f"shards of different N: {first.path} is {first.index}/{first.count}, "
                             f"{shard.path} is {shard.index}/{shard.count}")
        if shard.index in seen:
            raise MergeError(f"shard {shard.index}/{shard.count} twice: {seen[shard.index].path} and {shard.path}")
        seen[shard.index] = shard
        if shard.plan != first.plan:
            only = sorted(shard.plan ^ first.plan)[:3]
            raise MergeError(f"{first.path} and {shard.path} were planned with different cases (e.g. "
                             f"{', '.join(only)}): not slices of one run (same -m, -k and cases/?)")
        for name, a, b in _differences(first.manifest, shard.manifest):
            raise MergeError(f"{first.path} and {shard.path} differ in {name}: {a!r} vs {b!r}: not one night")


def _differences(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """(what, a's, b's) for the mode, the suite's commit and each package of SAME_PACKAGES that differ."""
    env_a, env_b = a.get("environment") or {}, b.get("environment") or {}
    pairs = [("mode", a.get("mode"), b.get("mode")),
             ("the suite's commit", (env_a.get("suite") or {}).get("commit"), (env_b.get("suite") or {}).get("commit"))]
    pk_a, pk_b = env_a.get("packages") or {}, env_b.get("packages") or {}
    pairs += [(name, pk_a.get(name), pk_b.get(name)) for name in SAME_PACKAGES]
    return [(name, x, y) for name, x, y in pairs if x != y]


def check_disjoint(shards: list[Shard]) -> None:
    """No case has records in two folders, and every record is of a case of its folder's slice and plan."""
    owner: dict[str, Shard] = {}
    for shard in shards:
        for case_id in shard.records:
            if case_id in owner:
                raise MergeError(f"case {case_id} has records in two shards: {owner[case_id].path} and "
                                 f"{shard.path} (shards overlap)")
            owner[case_id] = shard
    for shard in shards:
        for case_id, files in shard.records.items():
            if case_id not in shard.plan:
                raise MergeError(f"{files[0][0]}: case {case_id} is not in the run's plan ({shard.path / 'manifest.json'})")
            if shard_of(case_id, shard.count) != shard.index:
                raise MergeError(f"{files[0][0]}: case {case_id} belongs to shard "
                                 f"{shard_of(case_id, shard.count)}/{shard.count}, not {shard.path}'s "
                                 f"{shard.index}/{shard.count}")


def merge(out: Path, folders: list[Path]) -> Merged:
    """Check the shard folders and write their merged run into `out` (a new or empty folder)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"{out}: exists and is not an empty folder; the merge writes a new run")
    check_run_id(out.name)
    if not folders:
        raise MergeError("no shard folder to merge")
    shards = sorted((read_shard(Path(f)) for f in folders), key=lambda s: s.index)
    check_one_plan(shards)
    check_disjoint(shards)
    present = {s.index for s in shards}
    count, plan = shards[0].count, shards[0].plan
    missing = {i: sorted(c for c in plan if shard_of(c, count) == i)
               for i in range(1, count + 1) if i not in present}
    out.mkdir(parents=True, exist_ok=True)
    listing = _copy(out, shards)
    manifest = _manifest(out.name, shards, listing, missing)
    write_json_atomic(out / "manifest.json", manifest)
    return Merged(out, shards, missing, sum(len(v) for v in listing.values()))


def _copy(out: Path, shards: list[Shard]) -> dict[str, list[str]]:
    """Copy each record (same name, same bytes), the invariants and compat files, and the rest of each
    folder under shards/<I>of<N>/; returns case id -> record file names."""
    listing: dict[str, list[str]] = {}
    extras: dict[str, Path] = {}
    for shard in shards:
        for case_id, files in sorted(shard.records.items()):
            for file, _ in files:
                if (out / file.name).exists():
                    raise MergeError(f"{file}: a record of that name came from another shard already")
                shutil.copy2(file, out / file.name)
                listing.setdefault(case_id, []).append(file.name)
        for extra in (INVARIANTS_FILE, COMPAT_FILE):
            if (shard.path / extra).is_file():
                if extra in extras:
                    raise MergeError(f"{extra} in two shards: {extras[extra]} and {shard.path}")
                extras[extra] = shard.path
                (out / extra).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(shard.path / extra, out / extra)
        records = {f for files in shard.records.values() for f, _ in files}
        shutil.copytree(shard.path, out / "shards" / shard.label,
                        ignore=lambda d, names, r=records: [n for n in names if Path(d) / n in r])
    return listing


def _manifest(run_id: str, shards: list[Shard], listing: dict[str, list[str]], missing: dict[int, list[str]]) -> dict:
    """The merged run's manifest: the first shard's environment, every shard's sessions and counts, the whole
    plan; finished when every shard folder finished (a missing shard is lost cases, not an unfinished run)."""
    counts: dict[str, int] = {}
    for shard in shards:
        for status, n in (shard.manifest.get("counts") or {}).items():
            counts[status] = counts.get(status, 0) + int(n)
    ends = [s.manifest.get("finished_at") for s in shards]
    count = shards[0].count
    lost = {c: f"its shard {i}/{count} left no run folder among those merged" for i, cs in missing.items() for c in cs}
    return {
        "schema_version": SCHEMA_VERSION, "kind": MANIFEST_KIND, "run_id": run_id,
        "mode": shards[0].manifest.get("mode"), "profile": shards[0].manifest.get("profile"),
        "argv": ["python", "-m", "suite", "merge-shards", run_id, *(str(s.path) for s in shards)],
        "environment": shards[0].manifest.get("environment"),
        "started_at": min(str(s.manifest.get("started_at") or "") for s in shards) or None,
        "finished_at": max(ends) if all(ends) else None,
        "sessions": [{**sess, "shard": s.label} for s in shards for sess in s.manifest.get("sessions") or []],
        "counts": counts, "records": listing, "planned": sorted(shards[0].plan),
        "merged_shards": {"count": count,
                          "shards": {s.label: {"run_id": s.manifest.get("run_id"), "folder": str(s.path),
                                               "host": (s.manifest.get("environment") or {}).get("host")}
                                     for s in shards},
                          "missing": sorted(missing)},
        "lost": lost,
    }
