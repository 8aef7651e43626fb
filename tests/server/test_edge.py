"""The listening edge of a real `serve` process: malformed requests are answered without echoing
their bytes or logging a credential, compressed bodies are refused before any inflating, slow
clients are cut off, the connection bound refuses politely, and authenticated callers are still
served during all of it. No query string and no token reaches the log."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from bench.run import free_port
from sandbox import create_sandbox_app
from tests.e2e.stack import serve_on_loopback

ANALYST = "rtly_mcp_pat_demoanalyst_s3cr3t"
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "list_feedback", "arguments": {"limit": 2}}}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "Authorization": f"Bearer {ANALYST}"}
SECRET = "leakcheck0123456789abcdef"
"""A token-shaped value sent only in malformed requests: it must appear in no output."""
MAX_CONNECTIONS = 24


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    runner, url = await serve_on_loopback(create_sandbox_app())
    yield url
    await runner.cleanup()


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def raw(self, payload: bytes, *, wait_s: float = 5.0) -> bytes:
        """Send bytes on a fresh connection; everything read until the server closes it."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=wait_s) as sock:
            sock.sendall(payload)
            chunks = []
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        return b"".join(chunks)

    async def call(self) -> Any:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(self.url + "/retently/mcp", json=CALL, headers=HEADERS)
        assert answer.status_code == 200
        return answer.json()

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, logged = self.process.communicate(timeout=20)
        return logged.decode(errors="replace")


@asynccontextmanager
async def serving(upstream: str, header_timeout_s: float,
                  body_timeout_s: float = 30) -> AsyncIterator[Served]:
    """`serve` in its own process in front of `upstream`, until the block ends."""
    port = free_port()
    env = {**os.environ, "RETENTLY_API_URL": upstream, "REFINER_API_URL": upstream,
           "REFINER_AUTH_URL": upstream, "GATEWAY_LOG_JSON": "true",
           "GATEWAY_HEADER_TIMEOUT_S": str(header_timeout_s),
           "GATEWAY_BODY_TIMEOUT_S": str(body_timeout_s),
           "GATEWAY_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}
    process = subprocess.Popen(  # noqa: S603, ASYNC220 - started, stopped by the test
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    served = Served(process, port)
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as client:
            while True:
                assert process.poll() is None and time.monotonic() < deadline
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(served.url + "/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


@pytest.fixture
async def served(upstream: str) -> AsyncIterator[Served]:
    """A gateway that cuts off a client still sending headers, or a body, after one second."""
    async with serving(upstream, header_timeout_s=1, body_timeout_s=1) as running:
        yield running


@pytest.fixture
async def served_patiently(upstream: str) -> AsyncIterator[Served]:
    """A gateway whose idle connections stay open through a slow test (a loaded machine may
    take longer than a second to open a few dozen)."""
    async with serving(upstream, header_timeout_s=30) as running:
        yield running


def request_with(header_line: bytes) -> bytes:
    return (b"POST /retently/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header_line
            + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


MALFORMED = [
    b"Authorization: Bearer " + SECRET.encode() + b"\x01",
    b"Authorization: Bearer " + SECRET.encode() + b"\nX-Other: 1",
    b"X-Note: a\r\n Bearer " + SECRET.encode(),  # obs-fold
]


async def test_malformed_headers_are_refused_without_echoing_or_logging_the_token(
        served: Served) -> None:
    answers = [served.raw(request_with(line)) for line in MALFORMED]
    get_with_token = served.raw(b"GET /healthz?access_token=" + SECRET.encode()
                                + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    logged = served.stop()

    for answer in answers:
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400"))
        assert SECRET.encode() not in answer
    assert get_with_token.startswith(b"HTTP/1.1 200")
    assert SECRET not in logged
    assert '"event": "http_request"' in logged  # the access line is structured...
    assert "access_token" not in logged         # ...and carries no query string


async def test_the_server_header_names_no_library_or_version(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.get(served.url + "/healthz")
    assert answer.headers["Server"] == "mcp-gateway"


async def test_a_compressed_body_is_refused_before_it_is_inflated(served: Served) -> None:
    bomb = gzip.compress(b"[" * 50_000_000, compresslevel=9)  # 50 MB inflated, ~50 KB sent
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(served.url + "/retently/mcp", content=bomb,
                                   headers={**HEADERS, "Content-Encoding": "gzip"})
    assert answer.status_code == 415
    assert time.monotonic() - started < 1.0
    assert (await served.call())["result"]["isError"] is False


async def test_clients_trickling_their_headers_are_cut_off_and_others_are_served(
        served: Served) -> None:
    slow = [socket.create_connection(("127.0.0.1", served.port), timeout=5) for _ in range(12)]
    try:
        for sock in slow:
            sock.sendall(b"POST /retently/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        assert (await served.call())["result"]["isError"] is False  # served during the flood
        open_ = list(slow)
        while open_ and time.monotonic() - started < 5:
            for sock in list(open_):
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    open_.remove(sock)
            await asyncio.sleep(0.2)
        assert open_ == [], "trickling clients kept their connections"
        assert time.monotonic() - started < 4
    finally:
        for sock in slow:
            sock.close()
    assert (await served.call())["result"]["isError"] is False


def call_head(length: int) -> bytes:
    return (b"POST /retently/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            b"Authorization: Bearer " + ANALYST.encode() + b"\r\nContent-Length: "
            + str(length).encode() + b"\r\n\r\n")


async def send_in_parts(served: Served, parts: list[bytes], pause_s: float) -> tuple[bytes, float]:
    """Send the parts with a pause between them (the upstream is served on this loop, so no
    blocking socket); the whole answer, read until the server closes, and how long it took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    started = time.monotonic()
    try:
        for index, part in enumerate(parts):
            if index:
                await asyncio.sleep(pause_s)
            writer.write(part)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 10), time.monotonic() - started
    finally:
        writer.close()


async def test_a_body_that_stalls_is_answered_408_and_one_sent_in_parts_is_served(
        served: Served) -> None:
    body = orjson.dumps(CALL)
    stalled, waited = await send_in_parts(served, [call_head(len(body)) + body[:10]], 0)
    assert stalled.startswith(b"HTTP/1.1 408")
    assert b"did not arrive in time" in stalled
    assert b"\r\nX-Request-Id: " in stalled  # named, though sent before the handler returned
    assert 0.9 <= waited < 5

    # The body in two parts within the bound: the wait is armed, and the call is answered.
    answered, _ = await send_in_parts(served, [call_head(len(body)) + body[:10], body[10:]], 0.3)
    assert answered.startswith(b"HTTP/1.1 200")
    assert orjson.loads(answered.partition(b"\r\n\r\n")[2])["result"]["isError"] is False


async def test_past_the_connection_bound_new_connections_are_refused_politely(
        served_patiently: Served) -> None:
    served = served_patiently
    held: list[socket.socket] = []
    try:
        held.extend(socket.create_connection(("127.0.0.1", served.port), timeout=5)
                    for _ in range(MAX_CONNECTIONS + 4))
        await asyncio.sleep(0.2)
        refused = held[-1].recv(4096)
        assert refused.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in refused
    finally:
        for sock in held:
            sock.close()
    await asyncio.sleep(0.2)
    assert (await served.call())["result"]["isError"] is False
