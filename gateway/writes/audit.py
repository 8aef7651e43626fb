"""The audit log: one JSON line per write phase, each MACed (HMAC-SHA256 under the audit key) over
its content and the previous line's MAC, so a changed, removed or reordered line shows and no one
without the key can write a line that passes.

An edge module (it writes a file). Records never hold a token; arguments appear only as a digest;
identities only as the principal's subject and account.
"""

from __future__ import annotations

import fcntl
import hmac
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson

GENESIS: Final = "0" * 64
"""The `prev` of a chain's first record."""
_RECORD_TAG: Final = b"mcp-gateway audit record\n"

Clock = Callable[[], datetime]
Link = tuple[int, str]
"""A record's place in the chain: its `seq` (1 for the first record) and its `mac`."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def record_mac(key: bytes, record: Mapping[str, Any]) -> str:
    """A record's MAC: HMAC-SHA256 under the audit key over its canonical JSON (every field but
    `mac`; `seq` and `prev`, the previous record's MAC, included)."""
    body = orjson.dumps({k: v for k, v in record.items() if k != "mac"},
                        option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, _RECORD_TAG + body, sha256).hexdigest()


class AuditLog:
    """Appends chained records to a file, or keeps the chain in memory only (records then go
    to the log stream).

    Several processes may append to one file (`serve --workers`, or two gateways on a host):
    each append holds an exclusive lock on `<file>.lock` and chains onto the file's last
    record, read again under that lock, so the file stays one intact chain.
    """

    def __init__(self, key: bytes, clock: Clock, path: Path | None) -> None:
        self._key = key
        self._clock = clock
        self._path = path
        self._last: Link = (0, GENESIS)
        self._file: BinaryIO | None = None
        self._lock: BinaryIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _beside(path, ".lock").open("a+b")
            self._file = path.open("a+b", buffering=0)

    @classmethod
    def open(cls, path: Path | None, key: bytes, clock: Clock = _utc_now) -> AuditLog:
        """Continue the chain of an existing file, or start one; without a path the chain is
        kept in memory. `key` is the audit key (empty: a chain anyone could recompute)."""
        return cls(key, clock, path)

    @property
    def to_file(self) -> bool:
        return self._file is not None

    def write(self, **fields: Any) -> dict[str, Any]:
        """Append one record and return it as written."""
        if self._file is None or self._lock is None:
            return self._chained(self._last, fields)
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX)
        try:
            descriptor = self._file.fileno()
            record = self._chained(_last_link(descriptor) or (0, GENESIS), fields)
            self._file.write(orjson.dumps(record) + b"\n")
        finally:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
        return record

    def _chained(self, after: Link, fields: Mapping[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {"time": self._clock().isoformat(timespec="milliseconds"),
                                  "seq": after[0] + 1, **fields, "prev": after[1]}
        record["mac"] = record_mac(self._key, record)
        self._last = (record["seq"], record["mac"])
        return record

    def close(self) -> None:
        for opened in (self._file, self._lock):
            if opened is not None:
                opened.close()


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


_TAIL_BYTES: Final = 65_536
"""More than one record: the last record is found in this much of the file's end."""


def _last_link(descriptor: int) -> Link | None:
    """The link of the file's last record (read under the caller's lock), or None if there is
    none that can be read."""
    size = os.fstat(descriptor).st_size
    start = max(0, size - _TAIL_BYTES)
    tail = os.pread(descriptor, size - start, start)
    for line in reversed(tail.splitlines()):
        if line.strip():
            try:
                return _link_of(orjson.loads(line))
            except orjson.JSONDecodeError:
                return None  # a broken tail: `audit verify` will name the line
    return None


def _link_of(record: Any) -> Link | None:
    """A record's link, or None when it is not an audit record (no int seq, str prev and mac)."""
    if not isinstance(record, dict):
        return None
    seq, prev, mac = record.get("seq"), record.get("prev"), record.get("mac")
    if type(seq) is not int or seq < 1 or not isinstance(prev, str) or not isinstance(mac, str):
        return None
    return seq, mac


# --- verification (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Broken:
    """Where the chain breaks: a line (1-based) of one of the files given (by index)."""

    what: str
    file: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class Verdict:
    """What `verify` found. Intact only when nothing is `broken` and nothing is `unchecked`."""

    records: int
    broken: Broken | None = None
    unchecked: tuple[str, ...] = ()
    """What could not be checked (no key): nothing was found wrong, but it is not a full answer."""
    notes: tuple[str, ...] = ()
    """Worth saying, not wrong."""


@dataclass
class _Walk:
    """The chain read so far, one record at a time."""

    key: bytes | None
    records: int = 0
    end: Link | None = None
    file: int = -1
    notes: list[str] = field(default_factory=list)

    def step(self, file: int, line: str) -> str | None:
        """Take the next record; say what is wrong with it, or None."""
        self.records += 1
        first_in_file, self.file = file != self.file, file
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return "not a JSON record"
        link = _link_of(record)
        if link is None:
            return "not an audit record (it has no seq, prev and mac)"
        if self.key is not None and not hmac.compare_digest(
                link[1].encode(), record_mac(self.key, record).encode()):
            return ("its MAC does not match: it was changed after it was written, or written "
                    "under another key")
        problem = self._follows(record, link[0], first_in_file)
        self.end = link
        return problem

    def _follows(self, record: dict[str, Any], seq: int, first_in_file: bool) -> str | None:
        if self.end is not None:
            if (seq, record["prev"]) == (self.end[0] + 1, self.end[1]):
                return None
            return _gap(self.end[0], seq)
        if (seq, record["prev"]) == (1, GENESIS):
            return None
        return _gap(0, seq)


def _gap(end: int, seq: int) -> str:
    if seq > end + 1:
        return f"{seq - end - 1} record(s) before it were removed"
    return "it does not follow the previous record (a line was moved, repeated or replaced)"


NO_KEY: Final = ("no audit key (GATEWAY_AUDIT_KEY or --key-file): the chain's structure was "
                 "checked, but the records are not authenticated; anyone able to edit the file "
                 "could have rewritten them")


def verify(files: Sequence[Iterable[str]], key: bytes | None) -> Verdict:
    """Check the lines of one chain's files, oldest first: each record's MAC under `key` (None:
    the structure only) and its link to the record before."""
    walk = _Walk(key)
    for index, lines in enumerate(files):
        for number, line in enumerate(lines, start=1):
            if line.strip() and (problem := walk.step(index, line)) is not None:
                return Verdict(walk.records, Broken(problem, index, number))
    return Verdict(walk.records, unchecked=() if key is not None else (NO_KEY,),
                   notes=tuple(walk.notes))
