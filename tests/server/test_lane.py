"""The fast lane (gateway/server/lane.py), through raw HTTP on a served gateway: it answers what
aiohttp's path answers, byte for byte but for the request id and the date; it takes only the
requests it may and leaves the rest to aiohttp in order; and the edge's bounds (idle timeout,
closing, stopping with a call in flight) hold on it as on aiohttp's path."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from gateway.server import lane
from gateway.server.app import create_app
from gateway.server.connections import Serving
from gateway.server.endpoint import answer_on_lane
from gateway.server.incoming import Reply
from gateway.settings import SHIPPED_SPECS, Settings
from gateway.spec.loader import load_tree
from sandbox import create_sandbox_app
from tests.e2e.stack import serve_gateway, serve_on_loopback

ANALYST = "rtly_mcp_pat_demoanalyst_s3cr3t"
MAX_BODY = 2_000


def post(body: Any, *, path: str = "/retently/mcp", token: str | None = ANALYST,
         host: str = "127.0.0.1", extra: str = "", content_type: str = "application/json",
         accept: str = "application/json, text/event-stream") -> bytes:
    """One HTTP/1.1 POST as a client writes it."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Accept: {accept}\r\n{auth}{extra}Content-Length: {len(data)}\r\n\r\n"
            ).encode() + data


def rpc(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}


PING = rpc("ping")
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def comparable(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """Everything but what differs between any two answers (request id, date)."""
        kept = sorted((k.lower(), v) for k, v in self.headers
                      if k.lower() not in ("x-request-id", "date"))
        return self.status, kept, self.body


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line)]
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
    if length is not None:
        body = await asyncio.wait_for(reader.readexactly(length), 10)
    else:  # a stream, in chunks
        chunks = []
        while size := int(await asyncio.wait_for(reader.readuntil(b"\r\n"), 10), 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readexactly(2)
        body = b"".join(chunks)
    return Answer(status, headers, body)


class Gateway:
    """A gateway served as `serve` serves it, reached over raw connections."""

    def __init__(self, url: str) -> None:
        self.port = int(url.rsplit(":", 1)[1])

    async def exchange(self, payload: bytes, answers: int = 1) -> list[Answer]:
        """Write `payload` on a new connection (all at once: pipelined when it holds several
        requests) and read `answers` answers."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(payload)
            return [await read_answer(reader) for _ in range(answers)]
        finally:
            writer.close()

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


Serve = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    runner, url = await serve_on_loopback(create_sandbox_app())
    yield url
    await runner.cleanup()


@pytest.fixture
async def serve(upstream: str) -> AsyncIterator[Serve]:
    """Gateways in front of the one sandbox (so that their answers can be compared), the same
    secret key (so are the pseudonyms), and whatever settings a test gives."""
    registry = load_tree(SHIPPED_SPECS, {"RETENTLY_API_URL": upstream,
                                         "REFINER_API_URL": upstream,
                                         "REFINER_AUTH_URL": upstream})
    stops: list[Callable[[], Awaitable[None]]] = []

    async def start(**settings: Any) -> Gateway:
        app = create_app(Settings(log_json=True, log_level="warning", secret_key="k" * 32,
                                  max_body_bytes=MAX_BODY, **settings), registry)
        serving, url = await serve_gateway(app)
        stops.append(serving.stop)
        return Gateway(url)

    yield start
    for stop in reversed(stops):
        await stop()


@pytest.fixture
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The status of each answer the lane wrote (observed, not replaced)."""
    written: list[int] = []
    encode = lane.answer_parts

    def observed(response: Any, request_id: str, close: bool) -> tuple[bytes, ...]:
        written.append(response.status)
        return encode(response, request_id, close)

    monkeypatch.setattr(lane, "answer_parts", observed)
    return written


SAME_ANSWERS = {
    "ping": post(PING),
    "a notification (202, no body)": post({"jsonrpc": "2.0",
                                           "method": "notifications/initialized"}),
    "tools/list": post(rpc("tools/list")),
    "a tool call, de-identified": post(rpc("tools/call", {"name": "list_feedback",
                                                          "arguments": {"limit": 3}})),
    "a tool error": post(rpc("tools/call", {"name": "get_feedback",
                                            "arguments": {"id": "nope"}})),
    "no token (401)": post(rpc("tools/list"), token=None),
    "a token of another service (401)": post(rpc("tools/list"), token="refiner_demo_full"),
    "two Authorization headers (401)": post(
        rpc("tools/list"), extra="Authorization: Bearer rtly_mcp_pat_demoadmin_s3cr3t\r\n"),
    "another host (421)": post(PING, host="evil.example"),
    "a foreign origin (403)": post(PING, extra="Origin: https://evil.example\r\n"),
    "not JSON (415)": post(PING, content_type="text/plain"),
    "no JSON accepted (406)": post(PING, accept="text/html"),
    "a body too large (413)": post({"x": "y" * MAX_BODY}),
    "broken JSON (400)": post(b'{"jsonrpc": "2.0", "id": 1, "method": '),
    "an unknown method": post(rpc("nope/nope")),
    "a batch": post([PING, PING]),
    "the readonly view": post(rpc("tools/list"), path="/retently/readonly/mcp"),
}


@pytest.mark.parametrize("request_bytes", SAME_ANSWERS.values(), ids=SAME_ANSWERS.keys())
async def test_the_lane_answers_exactly_what_aiohttps_path_answers(
        serve: Serve, lane_calls: list[int], request_bytes: bytes) -> None:
    on, off = await serve(), await serve(fast_lane=False)
    [by_lane] = await on.exchange(request_bytes)
    assert lane_calls  # it was the lane's
    taken = len(lane_calls)
    [by_aiohttp] = await off.exchange(request_bytes)
    assert len(lane_calls) == taken  # ...and this one was not
    assert by_lane.comparable() == by_aiohttp.comparable()
    assert re.fullmatch(r"[0-9a-f]{32}", by_lane.header("X-Request-Id") or "")
    assert by_lane.header("Server") == "mcp-gateway"


async def test_a_compressed_body_is_refused_and_the_connection_closed(
        serve: Serve, lane_calls: list[int]) -> None:
    gateway = await serve()
    reader, writer = await gateway.connect()
    writer.write(post(PING, extra="Content-Encoding: gzip\r\n") + post(PING))
    answer = await read_answer(reader)
    assert answer.status == 415 and answer.header("Connection") == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the second request is not read
    writer.close()
    assert lane_calls == [415]


async def test_pipelined_requests_are_answered_in_order_whichever_path_takes_each(
        serve: Serve, lane_calls: list[int]) -> None:
    gateway = await serve()
    streamed = rpc("tools/call", {"name": "aggregate_feedback",
                                  "arguments": {"group_by": "channel"},
                                  "_meta": {"progressToken": "p1"}}, request_id=4)
    answers = await gateway.exchange(
        post(rpc("ping", request_id=1)) + HEALTHZ + post(rpc("ping", request_id=3))
        + post(streamed) + post(rpc("ping", request_id=5)), answers=5)
    assert [a.status for a in answers] == [200] * 5
    assert orjson.loads(answers[1].body) == {"status": "ok"}
    # The call with a progress token was answered as a stream (by aiohttp's path), its last
    # event the result.
    assert answers[3].header("Content-Type") == "text/event-stream"
    events = [line for line in answers[3].body.decode().splitlines() if line.startswith("data:")]
    assert orjson.loads(events[-1].removeprefix("data:"))["id"] == 4
    ids = [orjson.loads(answers[i].body)["id"] for i in (0, 2, 4)]
    assert ids == [1, 3, 5]
    # The lane took the first; a request with a `_meta` is aiohttp's (it may be streamed).
    assert lane_calls[0] == 200 and len(lane_calls) <= 3


async def test_a_request_that_comes_while_a_call_is_in_flight_is_answered_after_it(
        lane_calls: list[int]) -> None:
    async with slow_gateway() as (gateway, _):
        reader, writer = await gateway.connect()
        writer.write(post(rpc("tools/call", {"name": "list_feedback",
                                              "arguments": {"limit": 2}}, request_id=1)))
        await writer.drain()
        await asyncio.sleep(0.2)  # the first call waits for the upstream
        writer.write(post(rpc("ping", request_id=2)) + post(rpc("ping", request_id=3)))
        ids = [orjson.loads((await read_answer(reader)).body)["id"] for _ in range(3)]
        writer.close()
    assert ids == [1, 2, 3]
    assert lane_calls == [200, 200, 200]


async def test_a_call_that_asks_for_progress_is_streamed_by_aiohttps_path(
        serve: Serve, lane_calls: list[int]) -> None:
    gateway = await serve()
    [answer] = await gateway.exchange(post(rpc(
        "tools/call", {"name": "aggregate_feedback", "arguments": {"group_by": "channel"},
                       "_meta": {"progressToken": "p1"}})))
    assert answer.status == 200 and answer.header("Content-Type") == "text/event-stream"
    assert b"notifications/progress" in answer.body
    assert lane_calls == []


async def test_a_body_sent_in_parts_is_aiohttps_and_answered(
        serve: Serve, lane_calls: list[int]) -> None:
    gateway = await serve()
    reader, writer = await gateway.connect()
    whole = post(PING)
    writer.write(whole[:-10])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(whole[-10:])
    answer = await read_answer(reader)
    writer.close()
    assert answer.status == 200 and orjson.loads(answer.body)["result"] == {}
    assert lane_calls == []


async def test_connection_close_is_honoured(serve: Serve, lane_calls: list[int]) -> None:
    gateway = await serve()
    reader, writer = await gateway.connect()
    writer.write(post(PING, extra="Connection: close\r\n"))
    answer = await read_answer(reader)
    assert answer.status == 200 and answer.header("Connection") == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert lane_calls == [200]


async def test_a_kept_alive_connection_serves_many_and_is_closed_once_idle(
        serve: Serve, lane_calls: list[int]) -> None:
    gateway = await serve(header_timeout_s=0.5)
    reader, writer = await gateway.connect()
    for request_id in range(3):
        writer.write(post(rpc("ping", request_id=request_id)))
        assert orjson.loads((await read_answer(reader)).body)["id"] == request_id
        await asyncio.sleep(0.2)  # less than the idle timeout each time
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then idle past it: closed
    writer.close()
    assert len(lane_calls) == 3


async def test_a_call_longer_than_the_idle_timeout_is_answered_and_the_timer_runs_after(
        serve: Serve, lane_calls: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The idle timer, armed by the answer before, fires while the next call runs: that call is
    answered all the same, and the connection closes once it has been idle long enough."""
    gateway = await serve(header_timeout_s=0.3)

    async def slow(incoming: Any, body: bytes) -> Any:
        if b'"slow"' in body:
            await asyncio.sleep(0.8)
        return await answer_on_lane(incoming, body)

    monkeypatch.setattr(lane, "answer_on_lane", slow)
    reader, writer = await gateway.connect()
    writer.write(post(rpc("ping", request_id=1)))
    assert (await read_answer(reader)).status == 200
    await asyncio.sleep(0.1)
    writer.write(post({**rpc("ping", request_id=2), "note": "slow"}))
    second = await read_answer(reader)
    assert orjson.loads(second.body)["id"] == 2
    writer.write(post(rpc("ping", request_id=3)))  # still open right after the slow answer
    assert orjson.loads((await read_answer(reader)).body)["id"] == 3
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then idle past it: closed
    assert asyncio.get_running_loop().time() - started >= 0.25
    writer.close()
    assert lane_calls == [200, 200, 200]


async def test_smuggling_attempts_get_the_parsers_refusal_and_nothing_more(
        serve: Serve, lane_calls: list[int]) -> None:
    gateway = await serve()
    hidden = post(rpc("tools/list", request_id=66))
    for framing in ("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                    "Content-Length: 4\r\nContent-Length: 40\r\n"):
        smuggler = (b"POST /retently/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    b"application/json\r\n" + framing.encode() + b"\r\n0\r\n\r\n" + hidden)
        reader, writer = await gateway.connect()
        writer.write(smuggler)
        answer = await read_answer(reader)
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.status == 400
        assert b'"id":66' not in rest
    assert lane_calls == []


@asynccontextmanager
async def slow_gateway() -> AsyncIterator[tuple[Gateway, Serving]]:
    """A gateway whose upstream answers each request after half a second."""
    slow = create_sandbox_app()

    @web.middleware
    async def delayed(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        await asyncio.sleep(0.5)
        return await handler(request)

    slow.middlewares.append(delayed)
    runner, slow_url = await serve_on_loopback(slow)
    registry = load_tree(SHIPPED_SPECS, {"RETENTLY_API_URL": slow_url,
                                         "REFINER_API_URL": slow_url,
                                         "REFINER_AUTH_URL": slow_url})
    serving, url = await serve_gateway(create_app(
        Settings(log_json=True, log_level="warning"), registry))
    try:
        yield Gateway(url), serving
    finally:
        await serving.stop()
        await runner.cleanup()


async def test_a_stop_lets_a_call_in_flight_on_the_lane_finish(lane_calls: list[int]) -> None:
    async with slow_gateway() as (gateway, serving):
        call = asyncio.create_task(gateway.exchange(post(rpc(
            "tools/call", {"name": "list_feedback", "arguments": {"limit": 2}}))))
        await asyncio.sleep(0.2)  # the call is in flight
        await serving.stop()
        [answer] = await call
    assert answer.status == 200
    assert len(orjson.loads(answer.body)["result"]["structuredContent"]["items"]) == 2
    assert lane_calls == [200]  # it was the lane's


INJECTED = {"X-Bad": "a\r\nSet-Cookie: x=1"}


def lane_errors() -> float:
    return REGISTRY.get_sample_value("mcp_gateway_lane_errors_total") or 0.0


@pytest.mark.parametrize("answer", [web.Response(body=b"{}", headers=INJECTED),
                                    Reply(b"{}", INJECTED)], ids=["Response", "Reply"])
async def test_an_answer_the_lane_cannot_write_is_a_500_and_a_closed_connection(
        serve: Serve, monkeypatch: pytest.MonkeyPatch, answer: Any) -> None:
    gateway = await serve()

    async def broken(_incoming: Any, _body: bytes) -> Any:
        return answer

    monkeypatch.setattr(lane, "answer_on_lane", broken)
    counted = lane_errors()
    reader, writer = await gateway.connect()
    writer.write(post(PING))
    written = await read_answer(reader)
    assert written.status == 500 and written.header("Set-Cookie") is None
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert lane_errors() == counted + 1  # counted, for an alert
