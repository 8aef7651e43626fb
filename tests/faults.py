"""A fault-injecting upstream on loopback, for the tests that show how the gateway degrades.

A raw HTTP/1.1 server (asyncio streams, not a web framework), so it can do what a real upstream
or network does and a framework would not: stall, reset a connection mid-body or right after
acting on a request, declare one length and send another, close a kept-alive connection without
a word. Each request is read whole and recorded; then the fault planned for its path runs.
Deterministic: nothing random, and nothing waits longer than its fault says.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench.run import free_port

Fault = Callable[["Exchange"], "asyncio.Future[None] | None"]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Exchange:
    """One request and the connection to answer it on."""

    request: Received
    writer: asyncio.StreamWriter
    keep_alive: bool = True

    def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}",
                *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), not a polite FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
        self.keep_alive = False


def json_answer(body: object = None, status: int = 200,
                headers: dict[str, str] | None = None) -> Fault:
    payload = orjson.dumps({"id": "n1", "ok": True} if body is None else body)

    def answer(exchange: Exchange) -> None:
        exchange.send(status, payload, {"Content-Type": "application/json", **(headers or {})})

    return answer


def raw_answer(status: int, body: bytes, headers: dict[str, str]) -> Fault:
    def answer(exchange: Exchange) -> None:
        exchange.send(status, body, headers)

    return answer


def slow(seconds: float, then: Fault | None = None) -> Fault:
    after = then or json_answer()

    async def wait(exchange: Exchange) -> None:
        await asyncio.sleep(seconds)
        after(exchange)

    return lambda exchange: asyncio.ensure_future(wait(exchange))


def hang(exchange: Exchange) -> asyncio.Future[None]:
    """Never answer (until the server stops)."""
    return asyncio.get_running_loop().create_future()


def reset(exchange: Exchange) -> None:
    """Take the request (it is recorded, as if acted on) and reset: the answer is lost."""
    exchange.reset()


def reset_mid_body(exchange: Exchange) -> None:
    exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 5000\r\n\r\n{\"items\": [1, 2, 3")
    exchange.reset()


def forward(target: str, *, then_reset: bool = False) -> Fault:
    """Pass the request on to `target` (a real upstream, e.g. the sandbox) and relay its answer;
    with `then_reset`, the upstream acts on it but the answer is lost on the way back."""
    async def relay(exchange: Exchange) -> None:
        request = exchange.request
        headers = {k: v for k, v in request.headers.items()
                   if k not in ("host", "content-length", "connection")}
        async with aiohttp.ClientSession() as session, session.request(
                request.method, target + request.path, headers=headers,
                data=request.body or None) as answer:
            body = await answer.read()
            kind = answer.headers.get("Content-Type", "application/json")
        if then_reset:
            exchange.reset()
        else:
            exchange.send(answer.status, body, {"Content-Type": kind})

    return lambda exchange: asyncio.ensure_future(relay(exchange))


def close_after_answer(exchange: Exchange) -> None:
    """Answer, then close the kept-alive connection without saying so (no Connection: close):
    the next request on it meets a closed socket."""
    json_answer()(exchange)
    exchange.keep_alive = False


def huge(size: int) -> Fault:
    """A body of `size` bytes, declared (Content-Length) or not (chunked)."""
    def answer(exchange: Exchange) -> None:
        exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"[" + b"1," * 32_000 + b"1]"
        sent = 0
        while sent < size:
            exchange.writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
        exchange.writer.write(b"0\r\n\r\n")

    return answer


def gzip_bomb(expanded: int) -> Fault:
    """A small gzip body that expands to `expanded` bytes (packed once, here: about 0.3 s for
    100 MB, better spent before a timed fault than during it)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    block = b" " * 1_000_000
    body = b"".join([*(packer.compress(block) for _ in range(expanded // len(block))),
                     packer.flush()])
    return raw_answer(200, body, {"Content-Type": "application/json", "Content-Encoding": "gzip"})


@dataclass
class FaultServer:
    """Answers each request with the faults planned for "METHOD /path" or "/path" in turn (the
    last one repeats); unplanned ones are forwarded to `behind` when set, else answered 200
    JSON."""

    plans: dict[str, list[Fault]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    behind: str | None = None
    _server: asyncio.Server | None = None
    _pending: set[asyncio.Future[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, path: str, *faults: Fault) -> None:
        self.plans[path] = list(faults)

    def count(self, path: str) -> int:
        return sum(1 for r in self.received if r.path.split("?")[0] == path)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        for pending in self._pending:
            pending.cancel()
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.received.append(request)
                exchange = Exchange(request, writer)
                waiting = self._fault_for(request.method, request.path.split("?")[0])(exchange)
                if waiting is not None:
                    self._pending.add(waiting)
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting
                    self._pending.discard(waiting)
                if not exchange.keep_alive or writer.is_closing():
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()

    def _fault_for(self, method: str, path: str) -> Fault:
        planned = self.plans.get(f"{method} {path}") or self.plans.get(path)
        if not planned:
            return forward(self.behind) if self.behind else json_answer()
        return planned.pop(0) if len(planned) > 1 else planned[0]


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(method, target, headers, body)


@contextlib.asynccontextmanager
async def running(server: FaultServer) -> AsyncIterator[FaultServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def desk_specs(root: Path, desk_url: str, other_url: str, *,
               introspection_url: str | None = None) -> Path:
    """Two services for fault tests: `desk` on the faulty upstream (reads, an idempotent POST
    search, writes by POST and PUT), and `other` on a healthy one, to show who stays well."""
    auth = (f"{{resolver: introspection, introspection_url: '{introspection_url}', "
            "require_audience: false, default_scopes: [items]}"
            if introspection_url else "{resolver: passthrough, default_scopes: [items]}")
    for name, url, service_auth in (("desk", desk_url, auth),
                                    ("other", other_url,
                                     "{resolver: passthrough, default_scopes: [items]}")):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "service.yaml").write_text(
            f"name: {name}\ntitle: {name.title()}\nendpoint: /{name}/mcp\n"
            f"upstream: {{base_url: '{url}'}}\nauth: {service_auth}\n"
            "scopes: [{name: items}]\n")
        (folder / "tools.yaml").write_text(DESK_TOOLS)
    return root


DESK_TOOLS = """\
tools:
  - name: read_item
    kind: read
    description: Read the item.
    scopes: [items]
    max_in_flight: 4
    request: {method: GET, path: /item}
  - name: read_other
    kind: read
    description: Read another item.
    scopes: [items]
    request: {method: GET, path: /other}
  - name: search_items
    kind: read
    description: Search items (a read sent by POST).
    scopes: [items]
    request: {method: POST, path: /search, body: {q: x}, idempotent: true}
  - name: write_item
    kind: write
    description: Change the item.
    scopes: [items]
    input: {text: {type: string, required: true}}
    request: {method: POST, path: /item, body: {text: '{text}'}}
  - name: put_item
    kind: write
    description: Replace the item.
    scopes: [items]
    input: {text: {type: string, required: true}}
    request: {method: PUT, path: /item, body: {text: '{text}'}}
"""
