"""Result records: one versioned JSON file per case run, plus a manifest per run.

Schema history (bump SCHEMA_VERSION, in suite/records/record.py, on any change a reader must know
about, and say it here and in docs/results-schema.md):
  1  first version (docs/results-schema.md).
  2  adds `backend` (name, label, trainer_class, twin of the backend that trained the case); schema-1
     records get theirs from record.py's LEGACY_BACKENDS. The metrics mean what they meant in 1.
A reader refuses records of a newer schema with a message, and never rewrites old ones. A case record
is a CaseRecord (suite/records/record.py), read here and written from its to_dict.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from suite.errors import RecordError, not_utf8
from suite.records.record import RECORD_KIND, SCHEMA_VERSION, STATUSES, CaseRecord

__all__ = ["SCHEMA_VERSION", "RECORD_KIND", "MANIFEST_KIND", "STATUSES", "new_run_id", "check_run_id",
           "write_json_atomic", "write_record", "record_path", "read_record", "load_run", "read_document",
           "read_manifest"]

MANIFEST_KIND = "ftsuite.run"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 10000:04d}"


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id {run_id!r}: use letters, digits, '.', '_' and '-' (at most 128), "
                         f"starting with a letter or digit")
    return run_id


def write_json_atomic(path: Path, doc: dict) -> str:
    """Write a JSON document whole or not at all; returns the text written."""
    text = json.dumps(doc, indent=1, sort_keys=False, default=str) + "\n"
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text


def write_record(path: Path, record: CaseRecord) -> CaseRecord:
    """Write a case record (its to_dict) and return it as a reader will read it: what was written,
    checked as every reader checks it (a writer that made an unreadable record fails here)."""
    return CaseRecord.from_dict(json.loads(write_json_atomic(path, record.to_dict())), str(path))


def record_path(run_dir: Path, slug: str, taken: set[str] = frozenset()) -> Path:
    """A path for a new record that never overwrites one already written (repeats get .2, .3...),
    nor takes a name in `taken` (the manifest's listing: a deleted record's name stays its own)."""
    path = run_dir / f"{slug}.json"
    n = 2
    while path.exists() or path.name in taken:
        path = run_dir / f"{slug}.{n}.json"
        n += 1
    return path


def read_record(path: str | Path) -> CaseRecord:
    """The record in a file, or RecordError naming the file (and the field, CaseRecord.from_dict)."""
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
    return CaseRecord.from_dict(doc, str(path))


def load_run(run_dir: str | Path) -> tuple[list[CaseRecord], list[RecordError]]:
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
