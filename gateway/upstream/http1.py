"""HTTP/1.1 on the upstream side, as bytes: the head of a request the gateway sends and an
incremental reader of its answer. Pure: the direct lane (direct.py) feeds it what the socket
gives.

Strict where leniency could let one answer bleed into the next on a kept-alive connection: one
framing (a single Content-Length, or chunked), nothing after the answer, a bounded head, no
folded lines. An answer it does not accept ends the exchange as broken, and an answer after
which the connection's state is in any doubt marks it not reusable; the lane then closes it.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from typing import Final

from multidict import CIMultiDict

from gateway.errors import WireError

HEAD_LIMIT: Final = 65_536
"""Bytes of an answer's status line and headers (aiohttp's client allows 8 KB a field)."""
_CHUNK_LINE_LIMIT: Final = 4_096
_FIELD: Final = re.compile(r"\r\n([!#$%&'*+.^_`|~0-9A-Za-z-]+):([^\r\n]*)")
"""One header line: a token, a colon, the value (its spaces around stripped after: a pattern
that leaves them out itself backtracks on every character, 8 us for a head of four lines)."""
_DIGITS: Final = re.compile(r"[0-9]+")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]+")
_UNSAFE_TARGET: Final = re.compile(r"[^!-~]|#")
"""A request target is printable ASCII without spaces; a fragment is never sent."""
_UNSAFE_VALUE: Final = re.compile(r"[\r\n\x00]")
_NAMES: Final = re.compile(r"(?:\n[!#$%&'*+.^_`|~0-9a-z-]+)*\n")
_OWN_NAMES: Final = ("\nhost\n", "\ncontent-length\n", "\ntransfer-encoding\n",
                     "\nconnection\n", "\nexpect\n", "\nupgrade\n")
"""Headers the lane writes itself or that ask for another kind of exchange."""
_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH"})
_DECODERS: Final = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
                    "deflate": zlib.MAX_WBITS}


def request_head(method: str, target: str, authority: str, headers: Mapping[str, str],
                 body: bytes | None) -> bytes | None:
    """The request line and headers, as aiohttp's client would write them (Host first, then
    the given headers, `Accept: */*` and `Accept-Encoding: gzip, deflate` unless given, and the
    body's length); None when the request is not one the lane writes: a target or a header it
    would have to encode or refuse, or a header it writes itself."""
    if _UNSAFE_TARGET.search(target) or _UNSAFE_VALUE.search("".join(headers.values())):
        return None
    names = "\n" + "\n".join(headers).lower() + "\n" if headers else "\n"
    if not _NAMES.fullmatch(names) or any(own in names for own in _OWN_NAMES):
        return None
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    if "\naccept\n" not in names:
        lines.append("Accept: */*\r\n")
    if "\naccept-encoding\n" not in names:
        lines.append("Accept-Encoding: gzip, deflate\r\n")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}\r\n")
    elif method in _WITH_BODY:
        lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


def broken(detail: str) -> WireError:
    return WireError("broken", detail)


class AnswerReader:
    """Reads one answer from the bytes of a connection, bounded by `max_bytes` of body (on
    the wire and decoded). `feed` returns True once the answer is whole; then `status`,
    `headers`, `body` and `reusable` are set.

    Raises (from feed and feed_eof):
        WireError: `broken` for an answer that is not well-formed HTTP/1.1 or was cut short,
            `too_large` for a body over the bound.
    """

    __slots__ = ("_buffer", "_max", "_no_body", "_framing", "_length", "_parts", "_size",
                 "_encoding", "status", "headers", "body", "reusable")

    def __init__(self, max_bytes: int, *, no_body: bool = False) -> None:
        self._buffer = bytearray()
        self._max = max_bytes
        self._no_body = no_body
        self._framing = ""  # "" (head), "length", "chunked", "close", "done"
        self._length = 0
        self._parts: list[bytes | memoryview] = []
        self._size = 0
        self._encoding = ""
        self.status = 0
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.body = b""
        self.reusable = True

    def feed(self, data: bytes) -> bool:
        if self._framing == "length":
            return self._take(data)
        buffer = self._buffer
        if not buffer and self._framing == "":
            # The common case: the head whole in the first packet, read without a copy into
            # the buffer and out of it again.
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                self._read_head(data[:end])
                if self._framing == "length":
                    return self._take(memoryview(data)[end + 4:])
                data = data[end + 4:]
        buffer += data
        while self._framing == "":
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > HEAD_LIMIT:
                    raise broken("the answer's head is over the bound")
                return False
            head = bytes(buffer[:end])
            del buffer[:end + 4]
            self._read_head(head)
        if self._framing == "length":
            rest = bytes(buffer)
            buffer.clear()
            return self._take(rest)
        if self._framing == "chunked":
            return self._read_chunks()
        if self._framing == "close":
            self._grow(len(buffer))
            return False
        if buffer:  # bytes after an answer without a body: no request asked for them
            self.reusable = False
        return True

    def feed_eof(self) -> bool:
        """The peer closed the connection: True when that ends an answer read to the close."""
        self.reusable = False
        if self._framing == "close":
            self._finish(bytes(self._buffer))
            return True
        if self._framing == "done":
            return True
        raise broken("ServerDisconnectedError")

    def _read_head(self, head: bytes) -> None:
        text = head.decode("utf-8", "surrogateescape")
        line_end = text.find("\r\n")
        status_line = text if line_end < 0 else text[:line_end]
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 \
                or not code.isdigit() or not code.isascii() or rest[3:4] not in ("", " "):
            raise broken("the answer's status line is not HTTP/1.1")
        status = int(code)
        if 100 <= status < 200:
            if status == 101:
                raise broken("the upstream switched protocols unasked")
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        fields = _FIELD.findall(text, line_end) if line_end >= 0 else []
        lines = text.count("\r\n")
        if len(fields) != lines or text.count("\n") != lines or text.count("\r") != lines:
            raise broken("an answer header is not well-formed")  # not `name: value`, or a bare
            # CR or LF, which would end a value where another reader goes on
        headers: CIMultiDict[str] = CIMultiDict(
            [(name, value.strip(" \t")) for name, value in fields])
        self.status = status
        self.headers = headers
        self.reusable = version == "HTTP/1.1" and "close" not in \
            headers.get("Connection", "").lower()
        self._encoding = headers.get("Content-Encoding", "").strip().lower()
        self._frame(headers)

    def _frame(self, headers: CIMultiDict[str]) -> None:
        coding = headers.getall("Transfer-Encoding", [])
        lengths = {value.strip() for value in headers.getall("Content-Length", [])}
        if self._no_body or self.status in (204, 304):
            self._framing = "done"  # feed marks what follows it
        elif coding:
            if len(coding) != 1 or coding[0].strip().lower() != "chunked":
                raise broken("the answer's transfer coding is not chunked")
            self._framing = "chunked"
            self.reusable = self.reusable and not lengths  # both framings: RFC 9112 says close
        elif lengths:
            (length,) = lengths if len(lengths) == 1 else ("",)
            if not _DIGITS.fullmatch(length):
                raise broken("the answer's Content-Length is not one number")
            self._length = int(length)
            if self._length > self._max:
                raise WireError("too_large", "the declared length is over the bound")
            self._framing = "length"
        else:
            self._framing = "close"
            self.reusable = False

    def _take(self, data: bytes | memoryview) -> bool:
        """A part of a body of known length: kept as it came and joined once when whole (a
        57 KB body in four packets was copied three times through the buffer, 26 us)."""
        self._parts.append(data)
        self._size += len(data)
        if self._size < self._length:
            return False
        raw = b"".join(self._parts)
        if len(raw) > self._length:
            self.reusable = False  # bytes no request asked for
            raw = raw[:self._length]
        self._finish(raw)
        return True

    def _read_chunks(self) -> bool:
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if len(buffer) > _CHUNK_LINE_LIMIT:
                    raise broken("a chunk's size line is over the bound")
                return False
            size_text = bytes(buffer[:line_end]).partition(b";")[0].strip(b" \t")
            if not _HEX.fullmatch(size_text):
                raise broken("a chunk's size is not a hexadecimal number")
            size = int(size_text, 16)
            if size == 0:
                return self._read_trailers(line_end + 2)
            if len(buffer) < line_end + 2 + size + 2:
                self._grow(len(buffer) - line_end - 2)
                return False
            start = line_end + 2
            if buffer[start + size:start + size + 2] != b"\r\n":
                raise broken("a chunk does not end where its size says")
            self._grow(size)
            self._size += size
            self._parts.append(bytes(buffer[start:start + size]))
            del buffer[:start + size + 2]

    def _read_trailers(self, start: int) -> bool:
        buffer = self._buffer
        if buffer[start:start + 2] == b"\r\n":
            end = start + 2
        else:
            found = buffer.find(b"\r\n\r\n", start)
            if found < 0:
                if len(buffer) - start > HEAD_LIMIT:
                    raise broken("the answer's trailers are over the bound")
                return False
            end = found + 4
        if len(buffer) > end:
            self.reusable = False
        self._finish(b"".join(self._parts))
        return True

    def _grow(self, pending: int) -> None:
        """Refuse as soon as what is held of the body exceeds the bound."""
        if self._size + pending > self._max:
            raise WireError("too_large", "the body grew over the bound")

    def _finish(self, raw: bytes) -> None:
        self._framing = "done"
        self._buffer = bytearray()
        self._parts = []
        wbits = _DECODERS.get(self._encoding)
        self.body = raw if wbits is None or not raw else _decoded(raw, wbits, self._max)


def _decoded(raw: bytes, wbits: int, max_bytes: int) -> bytes:
    """A gzip or deflate body, decoded up to the bound (a small body cannot expand past it)."""
    try:
        decoder = zlib.decompressobj(wbits)
        body = decoder.decompress(raw, max_bytes + 1)
        if len(body) <= max_bytes and not decoder.unconsumed_tail:
            body += decoder.flush()
    except zlib.error:
        if wbits != zlib.MAX_WBITS:
            raise broken("ClientPayloadError") from None
        return _decoded(raw, -zlib.MAX_WBITS, max_bytes)  # deflate sent without its header
    if len(body) > max_bytes or decoder.unconsumed_tail:
        raise WireError("too_large", "the decoded body grew over the bound")
    if not decoder.eof:
        raise broken("ClientPayloadError")
    return body
