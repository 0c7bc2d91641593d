"""Errors raised where input enters the suite, each naming the file and the field at fault."""
from __future__ import annotations


class SuiteError(Exception):
    """Base of the errors a user can act on."""


class UsageError(SuiteError):
    """A command-line value the command cannot use: a folder that is a file, a selection of no case
    (the suite's commands exit 2; under pytest it becomes pytest's UsageError, exit 4)."""


class LockError(SuiteError):
    """The lock cannot be read, resolved or refreshed."""


class CaseError(SuiteError):
    """A case file is malformed, names something unknown, or asks for an impossible combination."""

    def __init__(self, file: str, field: str, message: str):
        self.file, self.field, self.message = file, field, message
        super().__init__(f"{file}: {field}: {message}")


class RecordError(SuiteError):
    """A result record is corrupt, truncated or of a schema this suite cannot read."""

    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}")


def not_utf8(exc: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8, said so that the user can find the byte."""
    data = exc.object if isinstance(exc.object, (bytes, bytearray)) else b""
    line = data[: exc.start].count(b"\n") + 1
    byte = f"byte 0x{data[exc.start]:02x}" if exc.start < len(data) else "a byte"
    return f"not UTF-8 text: {byte} at line {line} (offset {exc.start}); save the file as UTF-8"


def exception_line(exc: BaseException | str) -> str:
    """An exception as "Type: its first line" (of a message already so written, its first line): how a
    check, a load route or a phase of a case that raised is recorded (suite/judge/checks.py)."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else (type(exc).__name__ if not isinstance(exc, str) else "?")
