"""The upstream fast lane against a raw upstream on loopback that writes exact bytes: what it
sends, which answers it accepts, when it keeps a connection, and the bounds it shares with
aiohttp's client."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from gateway.errors import WireError
from gateway.settings import Settings
from gateway.upstream.aiohttp_wire import AiohttpWire
from gateway.upstream.direct import DirectLane
from gateway.upstream.wire import Answer

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
Answerer = Callable[[bytes], bytes | None]
"""Given a whole request's bytes, what to write back (None: close the connection)."""


class ThenClose(bytes):
    """An answer after which the upstream closes the connection."""


Planned = bytes | Answerer | None
"""What the upstream does at a request: write these bytes, ask a function, or close."""


@dataclass
class RawUpstream:
    """Answers each request on a connection with the next of `answers` (bytes, or a function of
    the request), and records the requests and how many connections were opened."""

    answers: list[Planned]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed_by_client: int = 0
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(2):
            while not check():
                self.changed.clear()
                await self.changed.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                self.changed.set()
                answer = self.answers.pop(0) if self.answers else b""
                written = answer(request) if callable(answer) else answer
                if written is None:
                    break
                writer.write(written)
                await writer.drain()
                if isinstance(written, ThenClose):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
            self.changed.set()
        writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[..., RawUpstream]]:
    servers: list[asyncio.Server] = []
    made: list[RawUpstream] = []

    def start(*answers: Planned) -> RawUpstream:
        raw = RawUpstream(list(answers))
        made.append(raw)
        return raw

    async def listen(raw: RawUpstream) -> None:
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        servers.append(server)
        raw.port = server.sockets[0].getsockname()[1]

    start.listen = listen  # type: ignore[attr-defined]
    yield start
    for raw in made:
        for writer in raw.writers:
            writer.close()
    for server in servers:
        server.close()


async def lane_to(upstream: Callable[..., RawUpstream], *answers: Planned,
                  max_connections: int = 4) -> tuple[DirectLane, RawUpstream]:
    raw = upstream(*answers)
    await upstream.listen(raw)  # type: ignore[attr-defined]
    return DirectLane(max_connections, connect_timeout_s=2.0), raw


async def get(lane: DirectLane, raw: RawUpstream, path: str = "/things/1?a=b",
              max_bytes: int = 10_000, method: str = "GET",
              headers: dict[str, str] | None = None, body: bytes | None = None) -> Answer | None:
    async with asyncio.timeout(5):
        return await lane.fetch(method, raw.url + path, headers=headers or {"X-Api-Key": "k"},
                                body=body, max_bytes=max_bytes)


async def test_the_request_is_written_as_aiohttps_client_writes_it(
        upstream: Callable[..., RawUpstream]) -> None:
    lane, raw = await lane_to(upstream, OK, OK)
    headers = {"X-Api-Key": "k", "Accept": "application/json", "traceparent": "00-ab-cd-01",
               "Content-Type": "application/json"}
    answer = await get(lane, raw, "/base/things/a%2Fb?tags%5B%5D=a%20b", headers=headers,
                       method="POST", body=b'{"x":1}')
    assert answer is not None and answer.status == 200 and answer.body == b'{"ok":true}'
    assert answer.headers["content-type"] == "application/json"
    session = AiohttpWire(Settings(upstream_fast_lane=False), 4)
    try:
        await session.fetch("POST", raw.url + "/base/things/a%2Fb?tags%5B%5D=a%20b",
                            headers=headers, body=b'{"x":1}', max_bytes=10_000)
    finally:
        await session.aclose()
    ours, theirs = raw.requests
    assert ours.startswith(b"POST /base/things/a%2Fb?tags%5B%5D=a%20b HTTP/1.1\r\n")
    assert sorted(ours.lower().split(b"\r\n")) == sorted(theirs.lower().split(b"\r\n"))
    lane.aclose()


async def test_a_connection_is_kept_for_the_next_exchange(
        upstream: Callable[..., RawUpstream]) -> None:
    lane, raw = await lane_to(upstream, OK, OK, OK)
    for _ in range(3):
        answer = await get(lane, raw)
        assert answer is not None and answer.status == 200
    assert raw.connections == 1
    lane.aclose()


@pytest.mark.parametrize("answer", [
    OK + b"HTTP/1.1 200 OK\r\n",  # bytes no request asked for
    OK.replace(b"Content-Length: 11", b"Connection: close\r\nContent-Length: 11"),
    OK.replace(b"HTTP/1.1", b"HTTP/1.0"),
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    b"b\r\n{\"ok\":true}\r\n0\r\n\r\n",  # two framings: the chunks win, then close
], ids=["extra bytes", "connection close", "HTTP/1.0", "length and chunked"])
async def test_a_connection_in_doubt_is_never_reused(
        upstream: Callable[..., RawUpstream], answer: bytes) -> None:
    lane, raw = await lane_to(upstream, answer, OK)
    first = await get(lane, raw)
    assert first is not None and first.body == b'{"ok":true}'
    second = await get(lane, raw)
    assert second is not None and second.status == 200
    assert raw.connections == 2
    lane.aclose()


async def test_bytes_after_an_answer_without_a_body_end_its_connection(
        upstream: Callable[..., RawUpstream]) -> None:
    lane, raw = await lane_to(upstream, b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200", OK)
    first = await get(lane, raw)
    assert first is not None and (first.status, first.body) == (204, b"")
    second = await get(lane, raw)
    assert second is not None and second.body == b'{"ok":true}'
    assert raw.connections == 2
    lane.aclose()


async def test_a_connection_closed_while_idle_is_replaced(
        upstream: Callable[..., RawUpstream]) -> None:
    lane, raw = await lane_to(upstream, OK, None, OK)
    assert await get(lane, raw) is not None
    # the upstream closes the idle connection (the None above, at the next request) ...
    with pytest.raises(WireError) as failed:
        await get(lane, raw)
    assert failed.value.kind == "broken"
    # ... and the next exchange opens a fresh one
    answer = await get(lane, raw)
    assert answer is not None and answer.status == 200 and raw.connections == 2
    lane.aclose()


async def test_a_connection_the_upstream_closed_is_not_taken_from_the_pool(
        upstream: Callable[..., RawUpstream]) -> None:
    lane, raw = await lane_to(upstream, OK, OK)
    assert await get(lane, raw) is not None
    raw.writers[0].close()
    await asyncio.sleep(0.05)  # its FIN arrives while the connection is idle
    answer = await get(lane, raw)
    assert answer is not None and answer.status == 200 and raw.connections == 2
    lane.aclose()


@pytest.mark.parametrize("answer,body", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"4;ext=1\r\n{\"ok\r\n7\r\n\":true}\r\n0\r\nX-Trailer: t\r\n\r\n", b'{"ok":true}'),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n" + OK, b'{"ok":true}'),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
     % len(gzip.compress(b"[1,2]")) + gzip.compress(b"[1,2]"), b"[1,2]"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n"
     % len(zlib.compress(b"[3]")) + zlib.compress(b"[3]"), b"[3]"),
], ids=["chunked", "interim answers", "no content", "gzip", "deflate"])
async def test_answers_read_in_any_split(upstream: Callable[..., RawUpstream], answer: bytes,
                                         body: bytes) -> None:
    """Each answer, delivered whole and one byte a packet, reads the same."""

    async def dribble(_request: bytes) -> None:
        for index in range(len(answer)):
            raw.writers[-1].write(answer[index:index + 1])
            await raw.writers[-1].drain()
            await asyncio.sleep(0)

    lane, raw = await lane_to(upstream, answer, b"")
    whole = await get(lane, raw)
    assert whole is not None and whole.body == body
    task = asyncio.ensure_future(get(lane, raw))
    await raw.until(lambda: len(raw.requests) == 2)
    await dribble(b"")
    split = await task
    assert split is not None and split.body == body and split.status == whole.status
    lane.aclose()


async def test_a_body_read_to_the_close_is_whole_and_ends_the_connection(
        upstream: Callable[..., RawUpstream]) -> None:
    lane, raw = await lane_to(upstream, ThenClose(b"HTTP/1.1 200 OK\r\n\r\n[1]"), OK)
    answer = await get(lane, raw)
    assert answer is not None and answer.body == b"[1]"
    assert (await get(lane, raw)) is not None and raw.connections == 2
    lane.aclose()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[1]",
    b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n[1]",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n folded\r\n\r\n[1]",
    b"HTTP/1.1 200 OK\r\nBad Header: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
    b"HTTP/2 200\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 101 Switching\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1]XX0\r\n\r\n",
    ThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n[1]"),  # cut short
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
    b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70_000,
    b"HTTP/1.1 200 OK\r\nX: a\rContent-Length: 0\r\nContent-Length: 3\r\n\r\n[1]",
    b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 0\r\nContent-Length: 3\r\n\r\n[1]",
], ids=["two lengths", "negative length", "folded line", "space in a name", "no colon",
        "HTTP/2", "status of four digits", "switching protocols", "gzip transfer coding",
        "chunk size not hex", "chunk longer than said", "cut short", "gzip that is not",
        "head over the bound", "a bare CR in a value", "a bare LF in a value"])
async def test_a_malformed_answer_is_broken_and_its_connection_closed(
        upstream: Callable[..., RawUpstream], answer: bytes) -> None:
    lane, raw = await lane_to(upstream, answer, OK)
    with pytest.raises(WireError) as failed:
        await get(lane, raw, max_bytes=200_000)
    assert failed.value.kind == "broken"
    answer_after = await get(lane, raw)
    assert answer_after is not None and answer_after.status == 200
    assert raw.connections == 2
    lane.aclose()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + (b"800\r\n" + b"x" * 2048 + b"\r\n") * 6,
    b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 12_000,
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
    % len(gzip.compress(b"0" * 50_000)) + gzip.compress(b"0" * 50_000),
], ids=["declared", "chunked", "read to the close", "decoded"])
async def test_a_body_over_the_bound_is_refused(upstream: Callable[..., RawUpstream],
                                                answer: bytes) -> None:
    lane, raw = await lane_to(upstream, lambda request: answer, OK)
    with pytest.raises(WireError) as failed:
        await get(lane, raw, max_bytes=10_000)
    assert failed.value.kind == "too_large"
    lane.aclose()


async def test_a_cancelled_exchange_closes_its_connection(
        upstream: Callable[..., RawUpstream]) -> None:
    lane, raw = await lane_to(upstream, lambda request: b"HTTP/1.1 200 OK\r\n", OK)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await lane.fetch("GET", raw.url + "/", headers={}, body=None, max_bytes=100)
    await raw.until(lambda: raw.closed_by_client == 1)  # closed at once, not left open
    # the rest of the first answer must never be read as the second's
    raw.writers[0].write(b"Content-Length: 2\r\n\r\n[]")
    answer = await get(lane, raw)
    assert answer is not None and answer.body == b'{"ok":true}' and raw.connections == 2
    lane.aclose()


async def test_a_refused_connection_is_a_connect_failure() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    lane = DirectLane(4, connect_timeout_s=2.0)
    with pytest.raises(WireError) as failed:
        await lane.fetch("GET", f"http://127.0.0.1:{port}/", headers={}, body=None,
                         max_bytes=100)
    assert failed.value.kind == "connect"


@pytest.mark.parametrize("url,headers", [
    ("http://user:secret@127.0.0.1:1/x", {}),
    ("http://127.0.0.1:99999/x", {}),
    ("http://127.0.0.1:1/caf\u00e9", {}),
    ("http://127.0.0.1:1/a b", {}),
    ("http://127.0.0.1:1/x#part", {}),
    ("http://127.0.0.1:1/x", {"X-Api-Key": "k\r\nX-Injected: 1"}),
    ("http://127.0.0.1:1/x", {"Bad Name": "v"}),
    ("http://127.0.0.1:1/x", {"host": "elsewhere"}),
    ("http://127.0.0.1:1/x", {"Transfer-Encoding": "chunked"}),
], ids=["user", "port", "non-ascii", "space", "fragment", "line break in a value",
        "space in a name", "own host", "own framing"])
async def test_what_the_lane_leaves_to_aiohttp_is_never_sent(url: str,
                                                             headers: dict[str, str]) -> None:
    lane = DirectLane(4, connect_timeout_s=2.0)
    # port 1 is closed: had the lane tried to send, this would be a connect failure
    assert await lane.fetch("GET", url, headers=headers, body=None, max_bytes=100) is None
