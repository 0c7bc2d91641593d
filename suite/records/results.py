"""Result records: one versioned JSON file per case run, plus a manifest per run.

Schema history (bump SCHEMA_VERSION on any change a reader must know about, and say it here):
  1  first version (docs/results-schema.md).
A reader refuses records of a newer schema with a message, and never rewrites old ones.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from suite.errors import RecordError, not_utf8

SCHEMA_VERSION = 1
RECORD_KIND = "ftsuite.case-result"
MANIFEST_KIND = "ftsuite.run"
STATUSES = ("passed", "failed", "error", "skipped")
REQUIRED = {"schema_version": int, "kind": str, "run_id": str, "case_id": str, "status": str,
            "markers": list, "case": dict, "fingerprint": str, "metrics": dict, "loss_curve": list,
            "checks": list, "environment": dict}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 10000:04d}"


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id {run_id!r}: use letters, digits, '.', '_' and '-' (at most 128), "
                         f"starting with a letter or digit")
    return run_id


def write_json_atomic(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def record_path(run_dir: Path, slug: str, taken: set[str] = frozenset()) -> Path:
    """A path for a new record that never overwrites one already written (repeats get .2, .3...),
    nor takes a name in `taken` (the manifest's listing: a deleted record's name stays its own)."""
    path = run_dir / f"{slug}.json"
    n = 2
    while path.exists() or path.name in taken:
        path = run_dir / f"{slug}.{n}.json"
        n += 1
    return path


def validate(doc: object, where: str) -> dict:
    """A record as read from disk, or RecordError naming the file and the field."""
    if not isinstance(doc, dict):
        raise RecordError(where, f"not a result record (a JSON {type(doc).__name__}, expected an object)")
    version = doc.get("schema_version")
    if not isinstance(version, int):
        raise RecordError(where, "field schema_version: missing or not an integer")
    if version > SCHEMA_VERSION:
        raise RecordError(where, f"field schema_version: {version} is newer than this ftsuite reads "
                                 f"({SCHEMA_VERSION}); upgrade ftsuite to read it")
    if doc.get("kind") != RECORD_KIND:
        raise RecordError(where, f"field kind: expected {RECORD_KIND!r}, got {doc.get('kind')!r}")
    for name, typ in REQUIRED.items():
        if name not in doc:
            raise RecordError(where, f"field {name}: missing")
        if not isinstance(doc[name], typ):
            raise RecordError(where, f"field {name}: expected {typ.__name__}, got {type(doc[name]).__name__}")
    if doc["status"] not in STATUSES:
        raise RecordError(where, f"field status: {doc['status']!r} is not one of {', '.join(STATUSES)}")
    return doc


def read_record(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise RecordError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RecordError(str(path), not_utf8(exc)) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(str(path), f"corrupt or truncated JSON at line {exc.lineno} column {exc.colno}: "
                                     f"{exc.msg}") from None
    return validate(doc, str(path))


def load_run(run_dir: str | Path) -> tuple[list[dict], list[RecordError]]:
    """Every readable record of a run, and an error for each one that is not (nothing is dropped silently)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecordError(str(run_dir), "not a directory of results")
    records, errors = [], []
    for path in sorted(run_dir.glob("*.json")):
        if path.name == "manifest.json":
            continue
        try:
            records.append(read_record(path))
        except RecordError as exc:
            errors.append(exc)
    return records, errors


def read_document(path: str | Path, kind: str, what: str, max_version: int = SCHEMA_VERSION) -> dict:
    """A JSON document of a given kind and a schema this ftsuite reads, or RecordError naming the field."""
    path = Path(path)
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RecordError(str(path), f"unreadable {what}: {not_utf8(exc)}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(str(path), f"unreadable {what}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise RecordError(str(path), f"field kind: expected {kind!r}")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > max_version:
        raise RecordError(str(path), f"field schema_version: {version!r} is newer than this ftsuite reads "
                                     f"({max_version}) or not an integer")
    return doc


def read_manifest(run_dir: str | Path) -> dict:
    return read_document(Path(run_dir) / "manifest.json", MANIFEST_KIND, "manifest")
