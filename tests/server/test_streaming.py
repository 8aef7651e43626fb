"""Progress over SSE through the endpoint: a paged tool called with a progressToken streams its
progress and then its response; closing the stream stops the paging; refusals and calls without
a progressToken stay plain JSON. The gateway served as in production (aiohttp's test server
cancels a handler whose client leaves, which production does not), a raw aiohttp client, and a
fault upstream on loopback that records each page request and can answer slowly or never.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import ClientResponse, web
from mcp_types.methods import parse_server_notification
from prometheus_client import REGISTRY

from gateway.server.app import create_app
from gateway.settings import Settings
from tests.faults import Fault, FaultServer, hang, json_answer, running, slow
from tests.support import MCP_HEADERS, rpc, service_tree

MODERN = "2026-07-28"
TOKEN = "alice"
SERVICE = """
name: desk
title: Desk
endpoint: /desk/mcp
upstream: {{base_url: '{url}'}}
auth: {{resolver: passthrough, default_scopes: [items]}}
scopes: [{{name: items}}]
"""
TOOLS = """
tools:
  - name: scan_rows
    kind: read
    description: Rows read page by page.
    scopes: [items]
    input:
      min: {type: integer}
    collect:
      request: {method: GET, path: /rows}
      items: data.rows
      pages: {stop_when: 'data.page >= data.pages', total: data.pages, max_pages: 5}
    filter:
      - {field: n, op: gte, value: '{min}'}
  - name: scan_badly
    kind: read
    description: Rows read in one request, answered with a content block no version accepts.
    scopes: [items]
    collect:
      request: {method: GET, path: /rows}
      items: data.rows
    response:
      content: [{type: text}]
  - name: read_item
    kind: read
    description: Read the item.
    scopes: [items]
    request: {method: GET, path: /item}
"""


def page(n: int, pages: int = 3) -> Fault:
    return json_answer({"data": {"rows": [{"n": n}], "page": n, "pages": pages}})


@pytest.fixture
async def upstream() -> AsyncIterator[FaultServer]:
    async with running(FaultServer()) as server:
        server.plan("/rows", page(1), page(2), page(3))
        yield server


Serve = Callable[..., Awaitable["Gateway"]]


class Gateway:
    """The gateway app on a loopback port, and a client session to it."""

    def __init__(self, runner: web.AppRunner, url: str, session: aiohttp.ClientSession) -> None:
        self.runner, self.url, self.session = runner, url, session

    async def post(self, body: Any, headers: dict[str, str]) -> ClientResponse:
        return await self.session.post(self.url + "/desk/mcp", json=body, headers=headers)


@pytest.fixture
async def serve(tmp_path: Path, upstream: FaultServer) -> AsyncIterator[Serve]:
    """Starts the gateway over the fault upstream; `handler_cancellation` as aiohttp's."""
    specs = service_tree(tmp_path, "desk", SERVICE.format(url=upstream.url), TOOLS)
    started: list[Gateway] = []

    async def start(*, handler_cancellation: bool = False) -> Gateway:
        app = create_app(Settings(specs_dir=specs, log_json=True, progress_keepalive_s=0.1))
        runner = web.AppRunner(app, access_log=None, handler_cancellation=handler_cancellation)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        gateway = Gateway(runner, f"http://127.0.0.1:{site.port}", aiohttp.ClientSession())
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.session.close()
        await gateway.runner.cleanup()


@pytest.fixture
async def client(serve: Serve) -> Gateway:
    return await serve()


def request(name: str = "scan_rows", arguments: dict[str, Any] | None = None, *,
            era: str = "legacy", progress: str | int | None = "p-1",
            accept: str = MCP_HEADERS["Accept"]) -> tuple[dict[str, Any], dict[str, str]]:
    """A tools/call body and its headers, in either era, with a progressToken unless None."""
    meta: dict[str, Any] = {} if progress is None else {"progressToken": progress}
    headers = {**MCP_HEADERS, "Accept": accept, "Authorization": f"Bearer {TOKEN}"}
    if era == "modern":
        meta |= {"io.modelcontextprotocol/protocolVersion": MODERN,
                 "io.modelcontextprotocol/clientCapabilities": {}}
        headers |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
                    "Mcp-Name": name}
    params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
    if meta:
        params["_meta"] = meta
    return rpc("tools/call", params, 9), headers


async def post(client: Gateway, name: str = "scan_rows",
               arguments: dict[str, Any] | None = None, **options: Any) -> ClientResponse:
    body, headers = request(name, arguments, **options)
    return await client.post(body, headers)


async def next_event(response: ClientResponse) -> Any:
    """The next event's JSON-RPC message, or "keep-alive" for a comment; None at the end."""
    data = None
    while line := await response.content.readline():
        text = line.decode().rstrip("\n")
        if text == ": keep-alive":
            return "keep-alive"
        if text.startswith("data: "):
            data = orjson.loads(text.removeprefix("data: "))
        elif text == "" and data is not None:
            return data
    return None


async def every_event(response: ClientResponse) -> list[Any]:
    events = []
    while (found := await next_event(response)) is not None:
        events.append(found)
    return events


def requested_pages(upstream: FaultServer) -> list[str]:
    return [r.path.partition("page=")[2] for r in upstream.received if r.path.startswith("/rows")]


def cancelled_calls() -> float:
    return REGISTRY.get_sample_value("mcp_gateway_requests_total", {
        "service": "desk", "method": "tools/call", "tool": "scan_rows",
        "outcome": "cancelled"}) or 0.0


async def until_cancelled(before: float) -> None:
    """Wait (bounded) until the gateway has ended one more call as cancelled."""
    async with asyncio.timeout(5):
        while cancelled_calls() < before + 1:  # noqa: ASYNC110 - a metric has no event to await
            await asyncio.sleep(0.01)


def progress(done: int, total: int | None, message: str,
             of: str | int = "p-1") -> dict[str, Any]:
    """The notifications/progress event expected for the request whose progressToken is `of`."""
    params: dict[str, Any] = {"progressToken": of, "progress": done}
    if total is not None:
        params["total"] = total
    return {"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {**params, "message": message}}


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_paged_call_with_a_progress_token_streams_each_page_then_the_response(
        client: Gateway, upstream: FaultServer, era: str) -> None:
    response = await post(client, era=era)

    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["Cache-Control"] == "no-cache"
    assert len(response.headers["X-Request-Id"]) == 32
    events = [e for e in await every_event(response) if e != "keep-alive"]
    assert events[:-1] == [progress(0, None, "Reading the first page"),
                           progress(1, 3, "Read page 1 of 3"), progress(2, 3, "Read page 2 of 3"),
                           progress(3, 3, "Read page 3 of 3")]
    for note in events[:-1]:  # each is a notification of the request's protocol version
        parse_server_notification(note["method"], MODERN if era == "modern" else "2025-03-26",
                                  note["params"])
    last = events[-1]
    assert last["id"] == 9
    assert last["result"]["structuredContent"]["pages_read"] == 3
    assert ("resultType" in last["result"]) is (era == "modern")
    assert requested_pages(upstream) == ["1", "2", "3"]


async def test_a_quiet_stream_gets_keep_alive_comments(
        client: Gateway, upstream: FaultServer) -> None:
    upstream.plan("/rows", page(1), slow(0.5, page(2)), page(3))

    events = await every_event(await post(client, progress=42))

    second = events.index(progress(1, 3, "Read page 1 of 3", 42))
    third = events.index(progress(2, 3, "Read page 2 of 3", 42))
    assert "keep-alive" in events[second + 1:third]  # while page 2 was awaited
    assert events[-1]["result"]["isError"] is False


@pytest.mark.parametrize("handler_cancellation", [False, True],
                         ids=["watched", "handler-cancelled"])
async def test_closing_the_stream_after_the_first_progress_event_requests_no_further_page(
        serve: Serve, upstream: FaultServer, handler_cancellation: bool) -> None:
    client = await serve(handler_cancellation=handler_cancellation)
    upstream.plan("/rows", slow(0.3, page(1, pages=5)), page(2, pages=5))
    before = cancelled_calls()
    response = await post(client)

    assert await next_event(response) == progress(0, None, "Reading the first page")
    response.close()
    await until_cancelled(before)

    # Page 1 was asked for as the stream opened, and answered after the client left: the
    # call ended there instead of going on to page 2.
    assert requested_pages(upstream) in (["1"], [])


@pytest.mark.parametrize("handler_cancellation", [False, True],
                         ids=["watched", "handler-cancelled"])
async def test_a_page_awaited_when_the_client_leaves_is_abandoned(
        serve: Serve, upstream: FaultServer, handler_cancellation: bool) -> None:
    client = await serve(handler_cancellation=handler_cancellation)
    upstream.plan("/rows", page(1, pages=5), hang)
    before = cancelled_calls()
    response = await post(client)

    while (found := await next_event(response)) != progress(1, 5, "Read page 1 of 5"):
        assert found is not None
    response.close()
    await until_cancelled(before)  # well before the upstream timeout would end the wait

    assert requested_pages(upstream) == ["1", "2"]


async def test_an_upstream_failure_after_the_stream_opened_is_its_last_event(
        client: Gateway, upstream: FaultServer) -> None:
    upstream.plan("/rows", page(1), json_answer({"message": "Broken"}, 500))

    events = await every_event(await post(client))

    assert events[:2] == [progress(0, None, "Reading the first page"),
                          progress(1, 3, "Read page 1 of 3")]
    assert events[-1]["id"] == 9 and events[-1]["result"]["isError"] is True
    assert "500" in events[-1]["result"]["content"][0]["text"]


async def test_an_internal_error_after_the_stream_opened_is_its_last_event(
        client: Gateway) -> None:
    events = await every_event(await post(client, "scan_badly"))

    assert events[:2] == [progress(0, 1, "Reading the first page"),
                          progress(1, 1, "Read page 1 of 1")]
    assert events[-1] == {"jsonrpc": "2.0", "id": 9,
                          "error": {"code": -32603, "message": "Internal error"}}


@pytest.mark.parametrize("era", ["legacy", "modern"])
@pytest.mark.parametrize(("name", "options"), [
    ("scan_rows", {"progress": None}),                  # no progressToken
    ("read_item", {}),                                  # one request: nothing to report
    ("scan_rows", {"accept": "application/json"}),      # a client that does not take SSE
], ids=["no-token", "not-paged", "json-only-client"])
async def test_other_calls_are_answered_with_plain_json(
        client: Gateway, name: str, options: dict[str, Any], era: str) -> None:
    response = await post(client, name, era=era, **options)

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    body = await response.json()
    assert body["id"] == 9 and body["result"]["isError"] is False


@pytest.mark.parametrize(("arguments", "options", "headers", "status", "code"), [
    ({"min": "x"}, {}, {}, 200, -32602),                          # arguments the schema refuses
    ({"min": "x"}, {"era": "modern"}, {}, 400, -32602),
    ({}, {}, {"Authorization": ""}, 401, -32600),                 # no credential
    ({}, {"era": "modern"}, {"Mcp-Name": "read_item"}, 400, -32020),  # headers disagree
], ids=["bad-arguments", "bad-arguments-modern", "no-credential", "header-mismatch"])
async def test_refusals_before_the_tool_starts_are_plain_json_answers(
        client: Gateway, upstream: FaultServer, arguments: dict[str, Any],
        options: dict[str, Any], headers: dict[str, str], status: int, code: int) -> None:
    body, sent = request("scan_rows", arguments, **options)
    response = await client.post(body, {k: v for k, v in (sent | headers).items() if v})

    assert response.status == status
    assert response.headers["Content-Type"] == "application/json"
    assert (await response.json())["error"]["code"] == code
    assert upstream.received == []


async def test_an_unknown_tool_with_a_progress_token_is_a_plain_json_error(
        client: Gateway) -> None:
    response = await post(client, "scan_everything")

    assert response.headers["Content-Type"] == "application/json"
    assert (await response.json())["error"]["code"] == -32602
