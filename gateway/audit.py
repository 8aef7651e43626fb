"""The audit log: one JSON line per write phase, hash-chained so a changed or removed line shows.

An edge module (it writes a file). Records never hold a token; arguments appear only as a digest;
identities only as the principal's subject and account.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson

GENESIS: Final = "0" * 64


def chain_hash(previous: str, record: dict[str, Any]) -> str:
    """The hash of a record: over the previous hash and the record's canonical JSON."""
    body = orjson.dumps({k: v for k, v in record.items() if k != "hash"},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(previous.encode() + body).hexdigest()


class AuditLog:
    """Appends chained records to a file (or any text stream)."""

    def __init__(self, stream: IO[str] | None, previous: str = GENESIS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._stream = stream
        self._previous = previous
        self._clock = clock

    @classmethod
    def open(cls, path: Path | None,
             clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> AuditLog:
        """Continue the chain of an existing file, or start one."""
        if path is None:
            return cls(None, clock=clock)
        previous = GENESIS
        if path.exists():
            with path.open(encoding="utf-8") as existing:
                for line in existing:
                    if line.strip():
                        previous = orjson.loads(line).get("hash", previous)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("a", encoding="utf-8", buffering=1), previous, clock)

    @property
    def to_file(self) -> bool:
        return self._stream is not None

    def write(self, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"time": self._clock().isoformat(timespec="milliseconds"),
                                  **fields, "prev": self._previous}
        record["hash"] = chain_hash(self._previous, record)
        self._previous = record["hash"]
        if self._stream is not None:
            self._stream.write(orjson.dumps(record).decode() + "\n")
        return record

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


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
