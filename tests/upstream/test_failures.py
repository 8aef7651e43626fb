"""An upstream that fails, lies or stalls is always a readable tool error, never a 500 or a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.server.app import create_app
from gateway.settings import Settings
from gateway.upstream.client import Upstream
from gateway.upstream.mock_wire import MockWire
from tests.support import (
    RETENTLY_ADMIN,
    UPSTREAM_CLIENTS,
    AiohttpClient,
    auth,
    gateway_app,
    rpc,
    service_tree,
)

URL = "/retently/mcp"
FEEDBACK = "https://app.retently.com/api/v2/feedback"


async def call(client: TestClient[Any, Any], name: str = "list_feedback",
               arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await client.post(URL, headers=auth(RETENTLY_ADMIN),
                                 json=rpc("tools/call", {"name": name,
                                                         "arguments": arguments or {}}))
    assert response.status == 200
    result: dict[str, Any] = (await response.json())["result"]
    return result


def huge(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b'{"data":{"responses":[{"comment":"' + b"x" * 20_000_000
                          + b'"}]}}')


@pytest.mark.parametrize(("answer", "says", "hides"), [
    (lambda _r: httpx.Response(500, json={"message": "Database unavailable", "code": 500}),
     ["HTTP 500", "Database unavailable", "retry"], []),
    (lambda _r: httpx.Response(429, json={"message": "Too many requests.", "code": 429},
                               headers={"Retry-After": "17"}),
     ["retry in 17 seconds"], []),
    (lambda _r: httpx.Response(200, text="<html><body>Maintenance</body></html>",
                               headers={"content-type": "text/html"}),
     ["text/html instead of JSON"], []),
    (lambda _r: httpx.Response(502, text="<html><body><script>x</script>Bad gateway</body></html>"),
     ["HTTP 502"], ["<script>"]),
    (huge, ["larger than"], []),
    (httpx.ConnectError("refused"), ["could not be reached"], []),
], ids=["500 with its message", "429 says when to retry", "html instead of json",
        "html error page described not echoed", "20 MB body refused not read",
        "connection failure"])
async def test_a_failing_upstream_is_a_tool_error_the_model_can_read(
        gateway: TestClient[Any, Any], upstream: respx.MockRouter,
        answer: Callable[[httpx.Request], httpx.Response] | Exception, says: list[str],
        hides: list[str]) -> None:
    upstream.get(FEEDBACK).mock(side_effect=answer)
    result = await call(gateway)
    text = result["content"][0]["text"]
    assert result["isError"] is True
    assert [needle for needle in says if needle not in text] == []
    assert [needle for needle in hides if needle in text] == []


async def test_upstream_silent_past_the_timeout_is_a_tool_error_in_time(
        aiohttp_client: AiohttpClient, upstream: respx.MockRouter, wire: MockWire) -> None:
    gateway = await aiohttp_client(gateway_app(wire, upstream_timeout_s=0.3))

    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()  # never set: only the gateway's timeout ends the wait
        return httpx.Response(200, json={})

    upstream.get(FEEDBACK).mock(side_effect=stall)
    async with asyncio.timeout(5):
        result = await call(gateway)
    assert result["isError"] is True
    assert "did not answer within 0.3 seconds" in result["content"][0]["text"]


async def test_a_timeout_of_seconds_cuts_a_silent_upstream_when_due(
        aiohttp_client: AiohttpClient, upstream: respx.MockRouter, wire: MockWire) -> None:
    """Deadlines of a second and more share one timer (gateway/upstream/deadlines.py): the cut
    is at most a tick late, and the call answers with the same tool error."""
    gateway = await aiohttp_client(gateway_app(wire, upstream_timeout_s=1.2))

    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        return httpx.Response(200, json={})

    upstream.get(FEEDBACK).mock(side_effect=stall)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(5):
        result = await call(gateway)
    took = loop.time() - started
    assert result["isError"] is True
    assert "did not answer within 1.2 seconds" in result["content"][0]["text"]
    assert 1.15 <= took < 1.2 + 0.6


async def test_the_timeout_told_is_the_calls_own_whatever_time_went_before_the_request(
        aiohttp_client: AiohttpClient, upstream: respx.MockRouter, wire: MockWire,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = await aiohttp_client(gateway_app(wire, upstream_timeout_s=0.3))
    through = Upstream._through_breakers

    async def late(self: Upstream, *args: Any) -> Any:
        await asyncio.sleep(0.05)  # a busy process: time spent before the request leaves
        return await through(self, *args)

    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        return httpx.Response(200, json={})

    monkeypatch.setattr(Upstream, "_through_breakers", late)
    upstream.get(FEEDBACK).mock(side_effect=stall)
    async with asyncio.timeout(5):
        result = await call(gateway)
    assert "did not answer within 0.3 seconds" in result["content"][0]["text"]


async def test_the_caller_token_goes_upstream_in_the_service_format_only(
        gateway: TestClient[Any, Any], upstream: respx.MockRouter) -> None:
    route = upstream.get(FEEDBACK).mock(return_value=httpx.Response(
        200, json={"data": {"responses": [], "page": 1, "pages": 1, "total": 0}}))
    result = await call(gateway)
    sent = route.calls.last.request
    assert result["isError"] is False
    assert sent.headers["Authorization"] == f"api_key={RETENTLY_ADMIN}"
    assert RETENTLY_ADMIN not in str(sent.url)


async def test_traceparent_is_carried_to_the_upstream(
        gateway: TestClient[Any, Any], upstream: respx.MockRouter) -> None:
    route = upstream.get(FEEDBACK).mock(return_value=httpx.Response(200, json={"data": {}}))
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await gateway.post(URL, headers={**auth(RETENTLY_ADMIN), "traceparent": trace},
                       json=rpc("tools/call", {"name": "list_feedback", "arguments": {}}))
    assert route.calls.last.request.headers["traceparent"] == trace


SPEC = """
version: 1
name: probe
title: Probe
endpoint: /probe/mcp
upstream: {base_url: "https://api.example.test/base",
           credential: {header: X-Api-Key, format: "{token}"},
           query_style: {arrays: brackets, booleans: one_zero}}
"""
TOOLS = """
version: 1
tools:
  - name: fetch
    kind: read
    description: Fetch one thing
    input:
      key: {type: string, required: true}
      tags: {type: array, items: {type: string}}
      flag: {type: boolean}
    request:
      method: GET
      path: /things/{key}/detail
      query: {tags: '{tags}', flag: '{flag}'}
"""


@pytest.fixture
async def probe(aiohttp_client: AiohttpClient, tmp_path: Path,
                wire: MockWire) -> TestClient[Any, Any]:
    specs = service_tree(tmp_path, "probe", SPEC, TOOLS)
    return await aiohttp_client(gateway_app(wire, specs_dir=specs))


@pytest.fixture
def api(router: respx.MockRouter) -> respx.Route:
    """Every request to the probe's upstream host, answered with an empty object."""
    return router.route(host="api.example.test").mock(return_value=httpx.Response(200, json={}))


@pytest.mark.parametrize(("key", "raw_path"), [
    ("a/b", b"/base/things/a%2Fb/detail"),
    ("x?admin=1", b"/base/things/x%3Fadmin%3D1/detail"),
    ("x#frag", b"/base/things/x%23frag/detail"),
    ("%2F", b"/base/things/%252F/detail"),
    ("https://evil.example/", b"/base/things/https%3A%2F%2Fevil.example%2F/detail"),
    ("../..", b"/base/things/..%2F../detail"),
])
async def test_path_arguments_stay_inside_their_segment_on_the_same_host(
        probe: TestClient[Any, Any], api: respx.Route, key: str, raw_path: bytes) -> None:
    response = await probe.post("/probe/mcp", headers=auth("sometoken"),
                                json=rpc("tools/call", {"name": "fetch",
                                                        "arguments": {"key": key}}))
    assert (await response.json())["result"]["isError"] is False
    sent = api.calls.last.request
    assert sent.url.host == "api.example.test"
    assert sent.url.raw_path == raw_path
    assert sent.headers["X-Api-Key"] == "sometoken"


@pytest.mark.parametrize("key", ["..", ".", "a\r\nb", "tab\there"])
async def test_path_arguments_that_would_change_the_path_are_refused(
        probe: TestClient[Any, Any], wire: MockWire, key: str) -> None:
    response = await probe.post("/probe/mcp", headers=auth("sometoken"),
                                json=rpc("tools/call", {"name": "fetch",
                                                        "arguments": {"key": key}}))
    body = await response.json()
    assert body["error"]["code"] == -32602
    assert wire.exchanges == []


async def test_query_arrays_and_booleans_follow_the_service_style(
        probe: TestClient[Any, Any], api: respx.Route) -> None:
    await probe.post("/probe/mcp", headers=auth("sometoken"),
                     json=rpc("tools/call", {"name": "fetch", "arguments": {
                         "key": "k", "tags": ["a", "b"], "flag": True}}))
    sent = api.calls.last.request
    assert sent.url.query == b"tags%5B%5D=a&tags%5B%5D=b&flag=1"


async def test_a_result_over_budget_is_trimmed_to_valid_json_saying_what_was_cut(
        probe: TestClient[Any, Any], api: respx.Route) -> None:
    rows = [{"n": i, "text": "y" * 500} for i in range(1000)]
    api.mock(return_value=httpx.Response(200, json=rows))
    response = await probe.post("/probe/mcp", headers=auth("sometoken"),
                                json=rpc("tools/call", {"name": "fetch",
                                                        "arguments": {"key": "k"}}))
    result = (await response.json())["result"]
    text = result["content"][0]["text"]
    structured = orjson.loads(text)
    assert len(text) <= 100_000
    assert structured == result["structuredContent"]
    cut = structured["truncated"]["lists"]["items"]
    assert cut["total"] == 1000 and cut["kept"] == len(structured["items"]) < 200
    assert structured["items"][0] == {"n": 0, "text": "y" * 500}


@pytest.mark.parametrize(("key", "raw_path"), [
    ("a/b", "/base/things/a%2Fb/detail"),
    ("x?admin=1", "/base/things/x%3Fadmin%3D1/detail"),
    ("%2F", "/base/things/%252F/detail"),
    ("../..", "/base/things/..%2F../detail"),
])
@pytest.mark.parametrize("transport", list(UPSTREAM_CLIENTS))
async def test_on_the_wire_the_encoded_segment_is_sent_as_built(
        aiohttp_client: AiohttpClient, aiohttp_server: Any, tmp_path: Path, key: str,
        raw_path: str, transport: str) -> None:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"ok": True})

    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", record)
    upstream = await aiohttp_server(upstream_app)
    base = f"http://127.0.0.1:{upstream.port}/base"
    specs = service_tree(tmp_path, "probe", SPEC.replace("https://api.example.test/base", base),
                         TOOLS)
    probe = await aiohttp_client(create_app(Settings(specs_dir=specs, log_json=True,
                                                     **UPSTREAM_CLIENTS[transport])))
    response = await probe.post("/probe/mcp", headers=auth("sometoken"), json=rpc(
        "tools/call", {"name": "fetch", "arguments": {"key": key}}))
    assert (await response.json())["result"]["isError"] is False
    assert seen == [raw_path]
