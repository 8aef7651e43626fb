"""The audit log: one JSON line per write phase, hash-chained so a changed or removed line shows.

An edge module (it writes a file). Records never hold a token; arguments appear only as a digest;
identities only as the principal's subject and account.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson

GENESIS: Final = "0" * 64


def chain_hash(previous: str, record: dict[str, Any]) -> str:
    """The hash of a record: over the previous hash and the record's canonical JSON."""
    body = orjson.dumps({k: v for k, v in record.items() if k != "hash"},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(previous.encode() + body).hexdigest()


class AuditLog:
    """Appends chained records to a file, or keeps the chain in memory only (records then go
    to the log stream).

    Several processes may append to one file (`serve --workers`, or two gateways on a host):
    each append holds an exclusive lock on the file and chains onto its last record, so the
    file stays one intact chain.
    """

    def __init__(self, file: BinaryIO | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._file = file
        self._previous = GENESIS
        self._clock = clock

    @classmethod
    def open(cls, path: Path | None,
             clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> AuditLog:
        """Continue the chain of an existing file, or start one."""
        if path is None:
            return cls(None, clock)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("a+b", buffering=0), clock)

    @property
    def to_file(self) -> bool:
        return self._file is not None

    def write(self, **fields: Any) -> dict[str, Any]:
        if self._file is None:
            return self._chained(fields)
        descriptor = self._file.fileno()
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            self._previous = _last_hash(descriptor) or GENESIS
            record = self._chained(fields)
            self._file.write(orjson.dumps(record) + b"\n")
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        return record

    def _chained(self, fields: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {"time": self._clock().isoformat(timespec="milliseconds"),
                                  **fields, "prev": self._previous}
        record["hash"] = chain_hash(self._previous, record)
        self._previous = record["hash"]
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


_TAIL_BYTES: Final = 65_536
"""More than one record: the last record is found in this much of the file's end."""


def _last_hash(descriptor: int) -> str | None:
    """The hash of the file's last record (read under the caller's lock), or None if empty."""
    size = os.fstat(descriptor).st_size
    start = max(0, size - _TAIL_BYTES)
    tail = os.pread(descriptor, size - start, start)
    for line in reversed(tail.splitlines()):
        if line.strip():
            try:
                found = orjson.loads(line).get("hash")
            except (orjson.JSONDecodeError, AttributeError):
                return None  # a broken tail: `audit verify` will name the line
            return found if isinstance(found, str) else None
    return None


def verify(lines: Iterable[str]) -> tuple[int, int | None, str]:
    """Check a chain: (records read, first broken line number or None, what is wrong)."""
    previous = GENESIS
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        count += 1
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return count, number, "not a JSON record"
        if record.get("prev") != previous:
            return count, number, "does not follow the previous record (a line was removed)"
        if record.get("hash") != chain_hash(previous, record):
            return count, number, "its content was changed after it was written"
        previous = record["hash"]
    return count, None, "intact"
