"""The audit log: one JSON line per write phase, each MACed (HMAC-SHA256 under the audit key) over
its content and the previous line's MAC, so a changed, removed or reordered line shows and no one
without the key can write a line that passes; and a signed head beside the file naming the last
record, so removing lines from the end shows too. A file renamed away (log rotation) is followed
by a new one at the path whose first record continues the chain.

An edge module (it writes files and, on a broken chain, the log stream). Records never hold a
token; arguments appear only as a digest; identities only as the principal's subject and account.
"""

from __future__ import annotations

import fcntl
import hmac
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson
import structlog

GENESIS: Final = "0" * 64
"""The `prev` of a chain's first record."""
_RECORD_TAG: Final = b"mcp-gateway audit record\n"
_HEAD_TAG: Final = b"mcp-gateway audit head\n"
"""Domain tags: a record's MAC never passes for a head's, nor the reverse."""

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


@dataclass(frozen=True)
class Head:
    """The chain's signed end, in `<file>.head`: how many records the chain has had (`records`,
    the last one's seq), the last one's MAC, and the (device, inode) of the file it went to.
    Replaced whole (a new file renamed over it) under the append lock after every append."""

    records: int
    last: str
    file: tuple[int, int]
    mac: str = ""

    def signed(self, key: bytes) -> Head:
        return replace(self, mac=self._mac(key))

    def authentic(self, key: bytes) -> bool:
        return hmac.compare_digest(self.mac.encode(), self._mac(key).encode())

    def _mac(self, key: bytes) -> str:
        body = orjson.dumps({"records": self.records, "last": self.last, "file": self.file},
                            option=orjson.OPT_SORT_KEYS)
        return hmac.new(key, _HEAD_TAG + body, sha256).hexdigest()

    def encode(self) -> bytes:
        return orjson.dumps({"records": self.records, "last": self.last, "file": self.file,
                             "mac": self.mac}) + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> Head:
        """Raises:
            ValueError: the bytes are not a head.
        """
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError("the head is not JSON") from exc
        if not isinstance(raw, dict):
            raise ValueError("the head is not a JSON object")
        records, last, file, mac = (raw.get(k) for k in ("records", "last", "file", "mac"))
        if (type(records) is not int or records < 0 or not isinstance(last, str)
                or not isinstance(mac, str) or not isinstance(file, list) or len(file) != 2
                or not all(type(n) is int for n in file)):
            raise ValueError("the head lacks records, last, file or mac")
        return cls(records, last, (file[0], file[1]), mac)


class AuditLog:
    """Appends chained records to a file, or keeps the chain in memory only (records then go
    to the log stream).

    Several processes may append to one file (`serve --workers`, or two gateways on a host):
    each append holds an exclusive lock on `<file>.lock`, chains onto the chain's end as the
    file and its head say under that lock, and replaces the head before letting go, so the
    file stays one intact chain and the head always names its last record.

    The lock has a file of its own because the log's inode changes when it is rotated: a
    lock on the log itself would let a writer still holding the renamed file and one on the
    new file append at once. When the file at the path is no longer the one this process has
    open (renamed away or removed: logrotate `create` or `nocreate`, not `copytruncate`), the
    append reopens the path and, the new file being empty, first writes a rotation record
    (`rotation: {previous_records: N}`, `prev` the MAC of record N in the old file), so
    `audit verify OLD NEW` checks the chain across both.

    When the end found is short of what the head (or this process) last saw, the log was cut:
    the record is chained onto the later end, so the gap stays visible to `audit verify`, and
    an `audit_chain_anomaly` error goes to the log stream.
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
            self._head_path = _beside(path, ".head")

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
            record = self._chained(self._last, fields)
            self._last = (record["seq"], record["mac"])
            return record
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX)
        try:
            file, identity = self._live_file()
            end, rotated = self._chain_end(file.fileno(), identity)
            lines = []
            if rotated:
                rotation = self._chained(end, {"rotation": {"previous_records": end[0]}})
                lines.append(orjson.dumps(rotation) + b"\n")
                end = (rotation["seq"], rotation["mac"])
            record = self._chained(end, fields)
            file.write(b"".join((*lines, orjson.dumps(record) + b"\n")))
            self._last = (record["seq"], record["mac"])
            self._replace_head(Head(*self._last, identity).signed(self._key))
        finally:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
        return record

    def _live_file(self) -> tuple[BinaryIO, tuple[int, int]]:
        """The file now at the path and its identity, reopened (created if need be) when the
        one this process holds was renamed away or removed."""
        if self._file is None or self._path is None:
            raise ValueError("the audit log has no file")
        held = _identity(os.fstat(self._file.fileno()))
        try:
            at_path: tuple[int, int] | None = _identity(os.stat(self._path))
        except FileNotFoundError:
            at_path = None
        if at_path != held:
            self._file.close()
            self._file = self._path.open("a+b", buffering=0)
            held = _identity(os.fstat(self._file.fileno()))
        return self._file, held

    def _chain_end(self, descriptor: int, identity: tuple[int, int]) -> tuple[Link, bool]:
        """Where the next record goes, after the latest of the file's last record, the head's
        and the last this process wrote; and whether the file is a new one after rotation (empty,
        and not the file the head names). Read under the lock."""
        tail = _last_link(descriptor)
        head = self._read_head()
        empty = os.fstat(descriptor).st_size == 0
        if tail is None and not empty:
            _anomaly("the file's last line is not an audit record")
        signed = (head.records, head.last) if head is not None else None
        seen = [link for link in (tail, signed, self._last) if link is not None and link[0] > 0]
        end = max(seen, key=lambda link: link[0], default=(0, GENESIS))
        rotated = empty and end[0] > 0 and (head is None or head.file != identity)
        found = tail[0] if tail is not None else 0
        if end[0] > found and not rotated:
            _anomaly("records were removed from the end of the file", expected=end[0],
                     found=found)
        return end, rotated

    def _read_head(self) -> Head | None:
        try:
            data = self._head_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            head = Head.decode(data)
        except ValueError:
            head = None
        if head is None or not head.authentic(self._key):
            _anomaly("the head is not one this key signed; the file's own end is used")
            return None
        return head

    def _replace_head(self, head: Head) -> None:
        """Write the head to a file of its own and rename it over the old one, so a reader
        (or a crash) never meets half a head."""
        temporary = _beside(self._head_path, ".tmp")
        temporary.write_bytes(head.encode())
        os.replace(temporary, self._head_path)

    def _chained(self, after: Link, fields: Mapping[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {"time": self._clock().isoformat(timespec="milliseconds"),
                                  "seq": after[0] + 1, **fields, "prev": after[1]}
        record["mac"] = record_mac(self._key, record)
        return record

    def close(self) -> None:
        for opened in (self._file, self._lock):
            if opened is not None:
                opened.close()


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _anomaly(problem: str, **details: Any) -> None:
    structlog.get_logger("gateway.writes.audit").error("audit_chain_anomaly", problem=problem,
                                                       **details)


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
    """Where the chain breaks: a line (1-based) of one of the files given (by index), or, with
    neither, the head."""

    what: str
    file: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class Verdict:
    """What `verify` found. Intact only when nothing is `broken` and nothing is `unchecked`."""

    records: int
    broken: Broken | None = None
    unchecked: tuple[str, ...] = ()
    """What could not be checked (no key, no head): nothing was found wrong, but it is not a
    full answer."""
    notes: tuple[str, ...] = ()
    """Worth saying, not wrong."""


@dataclass
class _Walk:
    """The chain read so far, one record at a time, and its head."""

    key: bytes | None
    head: Head | None
    records: int = 0
    end: Link = (0, GENESIS)
    file: int = -1
    passed_head: bool = False
    unchecked: list[str] = field(default_factory=list)
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
        head = self.head
        self.passed_head |= head is not None and link == (head.records, head.last)
        return problem

    def _follows(self, record: dict[str, Any], seq: int, first_in_file: bool) -> str | None:
        if (seq, record["prev"]) == (self.end[0] + 1, self.end[1]):
            return None
        if self.records == 1 and first_in_file and isinstance(record.get("rotation"), dict):
            # Only the writer, holding the key, starts a file this way; older files may be gone.
            self.notes.append(f"it continues the chain of an earlier file after record "
                              f"{seq - 1} (give that file first to check the link)")
            return None
        if seq > self.end[0] + 1:
            return f"{seq - self.end[0] - 1} record(s) before it were removed"
        return "it does not follow the previous record (a line was moved, repeated or replaced)"

    def finish(self, last_file: int, identities: Sequence[tuple[int, int]]) -> str | None:
        """What is wrong with the chain's end, given its head; what could not be checked."""
        head = self.head
        if self.key is None:
            self.unchecked.append(NO_KEY)
        if head is None:
            self.unchecked.append(NO_HEAD)
            return None
        if self.key is not None and not head.authentic(self.key):
            return "the head was changed, or written under another key"
        if self.end == (head.records, head.last):
            return None
        if self.passed_head:
            self.notes.append(f"the chain has {self.end[0] - head.records} record(s) past its "
                              "head (a writer stopped between the two, or the head was put back)")
            return None
        if self.end[0] > head.records:
            return "the chain does not end at the record its head names"
        if self.file < last_file and head.file not in identities:
            self.unchecked.append(
                f"the last file has no records, and the head names record {head.records} in an "
                "earlier file not given here (the log was rotated, or the file replaced): give "
                "the files in order, ending with this one")
            return None
        return (f"the last {head.records - self.end[0]} record(s) were removed: the head names "
                f"record {head.records}, the chain ends at record {self.end[0]}")


NO_KEY: Final = ("no audit key (GATEWAY_AUDIT_KEY or --key-file): the chain's structure was "
                 "checked, but the records are not authenticated; anyone able to edit the file "
                 "could have rewritten them")
NO_HEAD: Final = "no head beside the last file: records removed from its end would not show"


def verify(files: Sequence[Iterable[str]], key: bytes | None, head: bytes | None,
           identities: Sequence[tuple[int, int]] = ()) -> Verdict:
    """Check the lines of one chain's files, oldest first: each record's MAC under `key` (None:
    the structure only), its link to the record before, and that the chain ends where `head`
    (the head file beside the last file; None when there is none) says it does. `identities`,
    the files' (device, inode), tell a new empty file after rotation from an emptied one."""
    try:
        walk = _Walk(key, Head.decode(head) if head is not None else None)
    except ValueError as exc:
        return Verdict(0, Broken(f"{exc}"))
    for index, lines in enumerate(files):
        for number, line in enumerate(lines, start=1):
            if line.strip() and (problem := walk.step(index, line)) is not None:
                return Verdict(walk.records, Broken(problem, index, number))
    problem = walk.finish(len(files) - 1, identities)
    return Verdict(walk.records, Broken(problem) if problem is not None else None,
                   tuple(walk.unchecked), tuple(walk.notes))
