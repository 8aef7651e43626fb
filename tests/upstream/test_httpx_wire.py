"""httpx's client (`HttpxWire`) against respx routes, and the in-memory wire the unit tests run on,
answered by the same routes: one table of cases, and both wires must give the same answers and
the same failures. That is what lets every other test fake the upstream with respx while the
gateway runs its default client path."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import respx

from gateway.errors import WireError
from gateway.settings import Settings
from gateway.upstream.httpx_wire import HttpxWire
from gateway.upstream.mock_wire import MockWire
from gateway.upstream.wire import Answer, Wire
from tests.support import RouterUpstream

URL = "https://api.wire.test/base/a%2Fb/detail"
BOUND = 1_000


@dataclass(frozen=True)
class Answered:
    status: int
    body: bytes
    headers: dict[str, str]
    """Headers expected in the answer, each looked up in another case than it was sent in."""


async def chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 100):
        yield b"x" * 100


Respond = Callable[[httpx.Request], httpx.Response]
CASES: list[Any] = [
    pytest.param(lambda _r: httpx.Response(200, json={"ok": True}),
                 Answered(200, b'{"ok":true}', {"content-type": "application/json"}),
                 id="json"),
    pytest.param(lambda _r: httpx.Response(429, json={"message": "Slow down"},
                                           headers={"Retry-After": "7"}),
                 Answered(429, b'{"message":"Slow down"}', {"retry-after": "7"}),
                 id="error status and its headers"),
    pytest.param(lambda _r: httpx.Response(200, content=b"x" * BOUND),
                 Answered(200, b"x" * BOUND, {"CONTENT-LENGTH": str(BOUND)}),
                 id="body at the bound"),
    pytest.param(lambda _r: httpx.Response(200, content=b"x" * (BOUND + 1)), "too_large",
                 id="declared over the bound"),
    pytest.param(lambda _r: httpx.Response(200, content=chunks(BOUND)),
                 Answered(200, b"x" * BOUND, {"transfer-encoding": "chunked"}),
                 id="streamed at the bound"),
    pytest.param(lambda _r: httpx.Response(200, content=chunks(BOUND + 100)), "too_large",
                 id="streamed over the bound"),
    pytest.param(lambda _r: httpx.Response(200, content=gzip.compress(b'{"a":1}'),
                                           headers={"Content-Encoding": "gzip"}),
                 Answered(200, b'{"a":1}', {"content-encoding": "gzip"}),
                 id="gzip, decoded"),
    pytest.param(httpx.ReadTimeout, "timeout", id="read timeout"),
    pytest.param(httpx.ConnectTimeout, "timeout", id="connect timeout"),
    pytest.param(httpx.ConnectError, "connect", id="refused"),
    pytest.param(httpx.RemoteProtocolError, "broken", id="cut short"),
    pytest.param(httpx.ReadError, "broken", id="read error"),
]

@pytest.fixture(params=["httpx", "in memory"])
def each_wire(request: pytest.FixtureRequest, router: respx.MockRouter) -> Iterator[Wire]:
    """The wire under test, its upstream `router`: patched into httpx's transport for
    HttpxWire, asked directly by the in-memory wire."""
    if request.param == "httpx":
        with router:
            yield HttpxWire(Settings(), 10)
    else:
        yield MockWire(RouterUpstream(router))


async def fetch(wire: Wire, method: str = "GET", body: bytes | None = None) -> Answer:
    try:
        return await wire.fetch(method, URL, headers={"X-Key": "k1"}, body=body,
                                max_bytes=BOUND)
    finally:
        await wire.aclose()


@pytest.mark.parametrize(("respond", "expected"), CASES)
async def test_both_wires_answer_a_route_alike(
        each_wire: Wire, router: respx.MockRouter, respond: Respond | type[Exception],
        expected: Answered | str) -> None:
    router.get(URL).mock(side_effect=respond)
    if isinstance(expected, str):
        with pytest.raises(WireError) as failed:
            await fetch(each_wire)
        assert failed.value.kind == expected
        return
    answer = await fetch(each_wire)
    assert (answer.status, answer.body) == (expected.status, expected.body)
    assert {key: answer.headers.get(key) for key in expected.headers} == expected.headers


async def test_both_wires_send_the_request_as_built(
        each_wire: Wire, router: respx.MockRouter) -> None:
    route = router.post(URL).mock(return_value=httpx.Response(204))
    answer = await fetch(each_wire, "POST", orjson.dumps({"a": 1}))
    sent = route.calls.last.request
    assert answer.status == 204
    assert sent.url.raw_path == b"/base/a%2Fb/detail"
    assert sent.headers["x-key"] == "k1"
    assert orjson.loads(sent.content) == {"a": 1}
