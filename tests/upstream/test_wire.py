"""Every way to the upstream (the fast lane, aiohttp's client, httpx) against a real upstream on
loopback: the same answers, the same bounds, the same readable failures."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.server.app import create_app
from gateway.settings import Settings
from tests.support import UPSTREAM_CLIENTS, AiohttpClient, auth, rpc, service_tree
from tests.upstream.test_failures import SPEC

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
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
      text: {type: string}
    request:
      method: GET
      path: /things/{key}
      query: {tags: '{tags}', flag: '{flag}', text: '{text}'}
"""
MAX_BYTES = 100_000


@pytest.fixture(params=list(UPSTREAM_CLIENTS))
def transport(request: pytest.FixtureRequest) -> dict[str, Any]:
    return UPSTREAM_CLIENTS[request.param]


Probe = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def probe(aiohttp_client: AiohttpClient, aiohttp_server: Any, tmp_path: Path,
          transport: dict[str, Any]) -> Probe:
    """A gateway whose one tool calls `handler` on a real loopback upstream."""

    async def start(handler: Handler | None, *, port: int | None = None,
                    timeout_s: float = 5.0) -> TestClient[Any, Any]:
        if handler is not None:
            upstream_app = web.Application()
            upstream_app.router.add_route("*", "/{tail:.*}", handler)
            server: TestServer = await aiohttp_server(upstream_app)
            port = server.port
        specs = service_tree(tmp_path, "probe",
                             SPEC.replace("https://api.example.test", f"http://127.0.0.1:{port}"),
                             TOOLS)
        return await aiohttp_client(create_app(Settings(
            specs_dir=specs, log_json=True, **transport,
            upstream_timeout_s=timeout_s, upstream_max_response_bytes=MAX_BYTES)))

    return start


async def fetch(client: TestClient[Any, Any], **arguments: Any) -> dict[str, Any]:
    response = await client.post("/probe/mcp", headers=auth("probe-token"), json=rpc(
        "tools/call", {"name": "fetch", "arguments": {"key": "k1", **arguments}}))
    assert response.status == 200
    result: dict[str, Any] = (await response.json())["result"]
    return result


def text_of(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


async def test_the_request_reaches_the_upstream_as_built(probe: Probe) -> None:
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"ok": True})

    client = await probe(record)
    result = await fetch(client, tags=["a b", "é"], flag=True, text="x&y=z")
    assert result["isError"] is False
    assert result["structuredContent"] == {"ok": True}
    request = seen[0]
    assert request.path == "/base/things/k1"
    assert request.query.getall("tags[]") == ["a b", "é"]
    assert request.query["flag"] == "1" and request.query["text"] == "x&y=z"
    assert request.headers["X-Api-Key"] == "probe-token"
    assert "Cookie" not in request.headers


async def test_an_upstream_error_keeps_its_status_message_and_retry_hint(probe: Probe) -> None:
    async def limited(_request: web.Request) -> web.Response:
        return web.json_response({"message": "Slow down"}, status=429,
                                 headers={"Retry-After": "7"})

    result = await fetch(await probe(limited))
    assert result["isError"] is True
    assert "HTTP 429: Slow down" in text_of(result) and "retry in 7 seconds" in text_of(result)


async def test_html_instead_of_json_is_described(probe: Probe) -> None:
    async def html(_request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    result = await fetch(await probe(html))
    assert result["isError"] is True
    assert "text/html instead of JSON" in text_of(result)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_bound_is_refused(probe: Probe, declared: bool) -> None:
    body = b'{"comment":"' + b"x" * (MAX_BYTES * 3) + b'"}'

    async def huge(request: web.Request) -> web.StreamResponse:
        if declared:
            return web.Response(body=body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 8192):
            await response.write(body[start:start + 8192])
        await response.write_eof()
        return response

    result = await fetch(await probe(huge))
    assert result["isError"] is True
    assert "larger than" in text_of(result)


async def test_a_compressed_body_is_decoded_and_bounded_by_its_decoded_size(
        probe: Probe) -> None:
    small = {"comment": "fine"}
    bomb = b'{"comment":"' + b"0" * (MAX_BYTES * 20) + b'"}'
    answers = [orjson.dumps(small), bomb]

    async def gzipped(_request: web.Request) -> web.Response:
        packed = gzip.compress(answers.pop(0))
        assert len(packed) < MAX_BYTES  # on the wire, even the bomb is under the bound
        return web.Response(body=packed, headers={"Content-Encoding": "gzip",
                                                  "Content-Type": "application/json"})

    client = await probe(gzipped)
    first = await fetch(client)
    assert first["isError"] is False and first["structuredContent"] == small
    second = await fetch(client)
    assert second["isError"] is True and "larger than" in text_of(second)


async def test_a_refused_connection_is_a_tool_error(probe: Probe) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = await fetch(await probe(None, port=port))
    assert result["isError"] is True
    assert "could not be reached" in text_of(result)


async def test_a_silent_upstream_is_cut_off_at_the_timeout(probe: Probe) -> None:
    async def stall(_request: web.Request) -> web.Response:
        await asyncio.Event().wait()  # never set: only the gateway's timeout ends the wait
        return web.json_response({})

    client = await probe(stall, timeout_s=0.3)
    async with asyncio.timeout(5):
        result = await fetch(client)
    assert result["isError"] is True
    assert "did not answer" in text_of(result)


async def test_a_body_cut_short_is_a_tool_error(probe: Probe) -> None:
    async def truncated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Content-Length": "5000"})
        await response.prepare(request)
        await response.write(b'{"comment": "only part of it')
        assert request.transport is not None
        request.transport.close()
        return response

    result = await fetch(await probe(truncated))
    assert result["isError"] is True
    assert "exchange failed" in text_of(result)


async def test_a_cookie_set_by_the_upstream_is_never_sent_back(probe: Probe) -> None:
    cookies: list[str | None] = []

    async def sets_cookie(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("session", "first-callers-session", path="/")
        return response

    client = await probe(sets_cookie)
    for _ in range(2):
        assert (await fetch(client))["isError"] is False
    assert cookies == [None, None]
