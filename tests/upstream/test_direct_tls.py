"""The upstream fast lane over TLS, against an upstream on loopback with a certificate of a test
authority: exchanges on a kept connection, and a connection refused for a certificate it cannot
trust or that names another host."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import orjson
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.errors import WireError
from gateway.upstream.direct import DirectLane, default_tls


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


async def serving(authority: trustme.CA, *names: str) -> TestServer:
    opened: list[object] = []

    async def answer(request: web.Request) -> web.Response:
        opened.append(request.transport)
        return web.json_response({"path": request.path_qs, "tls": request.secure,
                                  "connections": len({id(t) for t in opened})})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(*names).configure_cert(context)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=context)
    return server


@pytest.fixture
async def upstream(authority: trustme.CA) -> AsyncIterator[TestServer]:
    server = await serving(authority, "127.0.0.1", "localhost")
    yield server
    await server.close()


def trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


async def test_an_https_exchange_keeps_its_connection(upstream: TestServer,
                                                      authority: trustme.CA) -> None:
    lane = DirectLane(4, connect_timeout_s=2.0, tls=trusting(authority))
    for name in ("127.0.0.1", "localhost"):
        url = f"https://{name}:{upstream.port}/things/1?a=b"
        for _ in range(2):
            answer = await lane.fetch("GET", url, headers={"Accept": "application/json"},
                                      body=None, max_bytes=10_000)
            assert answer is not None and answer.status == 200
            seen = orjson.loads(answer.body)
            assert seen["path"] == "/things/1?a=b" and seen["tls"] is True
    # one connection for each origin, each kept for its second exchange
    assert seen["connections"] == 2
    lane.aclose()


async def test_a_certificate_of_an_unknown_authority_is_refused(upstream: TestServer) -> None:
    lane = DirectLane(4, connect_timeout_s=2.0)  # the system's authorities only
    with pytest.raises(WireError) as failed:
        await lane.fetch("GET", f"https://127.0.0.1:{upstream.port}/", headers={}, body=None,
                         max_bytes=10_000)
    assert (failed.value.kind, failed.value.detail) == ("connect",
                                                        "ClientConnectorCertificateError")


async def test_a_certificate_for_another_host_is_refused(authority: trustme.CA) -> None:
    server = await serving(authority, "elsewhere.test")
    try:
        lane = DirectLane(4, connect_timeout_s=2.0, tls=trusting(authority))
        with pytest.raises(WireError) as failed:
            await lane.fetch("GET", f"https://127.0.0.1:{server.port}/", headers={},
                             body=None, max_bytes=10_000)
        assert failed.value.kind == "connect"
    finally:
        await server.close()


def test_the_default_context_checks_names_and_certificates_as_aiohttps_does() -> None:
    context = default_tls()
    assert context is default_tls()  # made once
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.options & ssl.OP_NO_COMPRESSION
