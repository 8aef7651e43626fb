"""The in-memory wire: it records what the gateway sends, answers through its handler, and refuses
a body over the bound exactly where the real clients do."""

from __future__ import annotations

import ast
import inspect
from typing import Any, get_args

import httpx
import pytest
import respx
from aiohttp.test_utils import TestClient

from gateway.errors import WireError, WireFailure
from gateway.upstream import mock_wire
from gateway.upstream.mock_wire import Exchange, Headers, MockWire
from gateway.upstream.wire import Answer
from tests.support import RETENTLY_ADMIN, AiohttpClient, auth, gateway_app, rpc

BOUND = 100


def answering(body: bytes, headers: dict[str, str] | None = None) -> MockWire:
    return MockWire(lambda _exchange: Answer(200, headers or {}, body))


async def fetch(wire: MockWire, **overrides: Any) -> Answer:
    request: dict[str, Any] = {"method": "GET", "url": "https://api.test/x", "headers": {},
                               "body": None, "max_bytes": BOUND, **overrides}
    return await wire.fetch(request.pop("method"), request.pop("url"), **request)


@pytest.mark.parametrize(("body", "headers", "refused"), [
    (b"x" * BOUND, {}, False),
    (b"x" * (BOUND + 1), {}, True),
    (b"x", {"Content-Length": str(BOUND + 1)}, True),
    (b"x" * BOUND, {"content-length": str(BOUND)}, False),
    (b"x", {"Content-Length": "unknown"}, False),
], ids=["read at the bound", "read over", "declared over", "declared at", "declared unreadable"])
async def test_a_body_over_the_bound_is_refused_as_too_large(
        body: bytes, headers: dict[str, str], refused: bool) -> None:
    wire = answering(body, headers)
    if refused:
        with pytest.raises(WireError) as failed:
            await fetch(wire)
        assert failed.value.kind == "too_large"
    else:
        assert (await fetch(wire)).body == body


async def test_every_exchange_is_recorded_as_sent() -> None:
    wire = answering(b"{}")
    await fetch(wire, method="PATCH", url="https://api.test/a%2Fb?x=1",
                headers={"X-Key": "k"}, body=b'{"a":1}')
    await fetch(wire)
    first, second = wire.exchanges
    assert (first.method, first.url, first.body) == ("PATCH", "https://api.test/a%2Fb?x=1",
                                                     b'{"a":1}')
    assert first.headers["x-key"] == "k"
    assert (second.method, second.body) == ("GET", None)


@pytest.mark.parametrize("kind", get_args(WireFailure))
async def test_a_wire_error_of_the_handler_reaches_the_caller(kind: WireFailure) -> None:
    def fail(_exchange: Exchange) -> Answer:
        raise WireError(kind, "from the handler")

    with pytest.raises(WireError) as failed:
        await fetch(MockWire(fail))
    assert failed.value.kind == kind


async def test_an_async_handler_is_awaited() -> None:
    async def later(exchange: Exchange) -> Answer:
        return Answer(201, {"Location": exchange.url}, b"")

    answer = await fetch(MockWire(later))
    assert (answer.status, answer.headers["location"]) == (201, "https://api.test/x")


def test_headers_are_read_in_any_case_and_keep_their_spelling() -> None:
    headers = Headers({"Retry-After": "7", "content-type": "application/json"})
    assert headers["retry-after"] == headers["RETRY-AFTER"] == "7"
    assert headers.get("Content-Type") == "application/json"
    assert list(headers) == ["Retry-After", "content-type"]
    assert "X-Missing" not in headers and len(headers) == 2
    assert repr(headers) == "Headers({'Retry-After': '7', 'content-type': 'application/json'})"


def test_the_mock_wire_imports_neither_http_client() -> None:
    tree = ast.parse(inspect.getsource(mock_wire))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module is not None}
    assert imported.isdisjoint({"aiohttp", "httpx"})


async def test_the_gateway_sends_through_the_given_wire_and_closes_it_when_it_stops(
        aiohttp_client: AiohttpClient, router: respx.MockRouter, wire: MockWire) -> None:
    router.get("https://app.retently.com/api/v2/feedback").mock(return_value=httpx.Response(
        200, json={"data": {"responses": [], "page": 1, "pages": 1, "total": 0}}))
    client: TestClient[Any, Any] = await aiohttp_client(gateway_app(wire))
    response = await client.post("/retently/mcp", headers=auth(RETENTLY_ADMIN), json=rpc(
        "tools/call", {"name": "list_feedback", "arguments": {}}))
    assert (await response.json())["result"]["isError"] is False
    assert [e.url.split("?")[0] for e in wire.exchanges] == [
        "https://app.retently.com/api/oauth/introspect",
        "https://app.retently.com/api/v2/feedback"]
    assert wire.closed is False
    await client.close()
    assert wire.closed is True
