"""The upstream fast lane: HTTP/1.1 exchanges on kept-alive connections of its own, without
aiohttp's client request and response objects. An edge.

aiohttp's client builds a `ClientRequest`, a `ClientResponse`, a stream reader and their
timers for every exchange: about a sixth of a `list_feedback` call's CPU (bench/README.md). The
lane writes the request's bytes itself and reads the answer with `http1.AnswerReader`. It takes
only what it can send exactly as aiohttp would: an `http://` or `https://` URL whose target and
headers need no encoding (`http1.request_head`). Anything else (a user in the URL, a header it
would have to refuse) is left to aiohttp's client, as before: `fetch` returns None before
sending. TLS is asyncio's, with the context aiohttp's client uses by default: the system's
certificate authorities, the host name checked, no compression, HTTP/1.1 asked for by ALPN.

The guarantees are the wire's (wire.py): bounded bodies, decoded size counted, no redirect, no
cookie, never sent twice. A connection is reused only after an answer read exactly to its end;
one that timed out, failed, was cancelled or held anything else is closed.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Mapping
from typing import Final, cast

from gateway.errors import WireError
from gateway.upstream.http1 import AnswerReader, broken, request_head
from gateway.upstream.wire import Answer

_ORIGINS_KEPT: Final = 64
Origin = tuple[str, int, bool]
"""Host, port, and whether over TLS."""


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The context of every lane's TLS connections, made once: loading the system's authorities
    takes milliseconds. As aiohttp's client makes its own (`_make_ssl_context(True)`)."""
    context = ssl.create_default_context()  # compression off already
    context.set_alpn_protocols(["http/1.1"])
    return context


class _Connection(asyncio.Protocol):
    """One connection to an upstream; at most one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = True
        self._reader: AnswerReader | None = None
        self._whole: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    async def exchange(self, head: bytes, body: bytes | None, reader: AnswerReader) -> None:
        assert self.transport is not None  # noqa: S101 - connected before use
        if not self.open:  # closed between its connection and this exchange
            raise broken("ServerDisconnectedError")
        self._reader = reader
        self._whole = asyncio.get_running_loop().create_future()
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        await self._whole

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:  # bytes while idle: nothing may be read from it again
            self.close()
            return
        try:
            whole = reader.feed(data)
        except WireError as failed:
            self._end(failed)
            return
        if whole:
            self._end(None)

    def eof_received(self) -> bool:
        self._ended_by_peer()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended_by_peer()

    def _ended_by_peer(self) -> None:
        self.open = False
        reader = self._reader
        if reader is not None:
            try:
                self._end(None if reader.feed_eof() else broken("ServerDisconnectedError"))
            except WireError as failed:
                self._end(failed)

    def _end(self, failure: WireError | None) -> None:
        whole, self._whole, self._reader = self._whole, None, None
        if whole is not None and not whole.done():
            if failure is None:
                whole.set_result(None)
            else:
                whole.set_exception(failure)

    def close(self) -> None:
        self.open = False
        self._reader = None
        if self.transport is not None:
            self.transport.close()


class DirectLane:
    """A pool of kept-alive connections per origin, at most `max_connections` in use."""

    def __init__(self, max_connections: int, connect_timeout_s: float,
                 keepalive_s: float = 30.0, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self._slots = asyncio.Semaphore(max_connections)
        self._connect_timeout_s = connect_timeout_s
        self._keepalive_s = keepalive_s
        self._origins: dict[str, tuple[Origin, str] | None] = {}
        self._idle: dict[Origin, list[tuple[_Connection, float]]] = {}

    async def fetch(self, method: str, url: str, *, headers: Mapping[str, str],
                    body: bytes | None, max_bytes: int) -> Answer | None:
        """One exchange, or None (nothing sent) for a request the lane leaves to aiohttp.

        Raises:
            WireError: as Wire.fetch.
        """
        if url.startswith("http://"):
            scheme = 7
        elif url.startswith("https://"):
            scheme = 8
        else:
            return None
        slash = url.find("/", scheme)
        authority, target = ((url[scheme:slash], url[slash:]) if slash > 0
                             else (url[scheme:], "/"))
        try:
            found = self._origins[url[:scheme] + authority]
        except KeyError:
            found = self._learn(url[:scheme], authority)
        if found is None:
            return None
        origin, host = found
        head = request_head(method, target, host, headers, body)
        if head is None:
            return None
        reader = AnswerReader(max_bytes, no_body=method == "HEAD")
        async with self._slots:
            connection = self._idle_connection(origin) or await self._connect(origin)
            try:
                await connection.exchange(head, body, reader)
            except BaseException:
                connection.close()
                raise
            if reader.reusable and connection.open:
                self._idle.setdefault(origin, []).append((connection, time.monotonic()))
            else:
                connection.close()
        return Answer(reader.status, reader.headers, reader.body)

    def _learn(self, scheme: str, authority: str) -> tuple[Origin, str] | None:
        """The host and port of an authority, or None for one the lane leaves to aiohttp
        (a user part, an odd port); kept for the few origins a process talks to."""
        found: tuple[Origin, str] | None = None
        tls = scheme == "https://"
        host, colon, port = authority.rpartition(":") if not authority.endswith("]") \
            else (authority, "", "")
        if not colon:
            host, port = authority, "443" if tls else "80"
        if authority.isascii() and authority.isprintable() and " " not in authority \
                and "@" not in authority and host and port.isdigit() and 0 < int(port) < 65_536:
            bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
            found = ((bare, int(port), tls), authority)
        if len(self._origins) >= _ORIGINS_KEPT:
            self._origins.clear()
        self._origins[scheme + authority] = found
        return found

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        """The most recently used open connection (the likeliest still open upstream);
        those idle past the keep-alive are closed on the way."""
        idle = self._idle.get(origin)
        oldest = time.monotonic() - self._keepalive_s
        while idle:
            connection, since = idle.pop()
            if connection.open and since > oldest:
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port, tls = origin
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(
                    _Connection, host, port,
                    ssl=(self._tls or default_tls()) if tls else None,
                    server_hostname=host if tls else None)
        except TimeoutError as exc:
            raise WireError("timeout", "ConnectionTimeoutError") from exc
        except ssl.SSLCertVerificationError as exc:
            raise WireError("connect", "ClientConnectorCertificateError") from exc
        except ssl.SSLError as exc:
            raise WireError("connect", "ClientConnectorSSLError") from exc
        except OSError as exc:
            raise WireError("connect", "ClientConnectorError") from exc
        return connection

    def aclose(self) -> None:
        for idle in self._idle.values():
            for connection, _ in idle:
                connection.close()
        self._idle.clear()
