"""Without a usable credential, only the anonymous surface answers; the rest is a 401 challenge."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from gateway.settings import SHIPPED_SPECS
from gateway.spec.loader import load_tree
from gateway.upstream.mock_wire import MockWire
from tests.support import MCP_HEADERS, auth, rpc

URL = "/retently/mcp"


async def test_ping_tool_works_without_a_token(gateway: TestClient[Any, Any]) -> None:
    response = await gateway.post(URL, headers=MCP_HEADERS,
                                  json=rpc("tools/call", {"name": "ping", "arguments": {}}))
    result = (await response.json())["result"]
    assert response.status == 200
    assert result["structuredContent"]["pong"] is True
    assert result["structuredContent"]["timestamp"].endswith("Z")


@pytest.mark.parametrize("message", [
    rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}),
    rpc("ping"),
])
async def test_connecting_works_without_a_token(gateway: TestClient[Any, Any],
                                                message: dict[str, Any]) -> None:
    response = await gateway.post(URL, headers=MCP_HEADERS, json=message)
    assert response.status == 200
    assert "result" in await response.json()


@pytest.mark.parametrize("message", [
    rpc("tools/list"),
    rpc("tools/call", {"name": "list_feedback", "arguments": {}}),
    rpc("tools/call", {"name": "no_such_tool", "arguments": {}}),
])
async def test_everything_else_without_a_token_is_a_401_challenge(
        gateway: TestClient[Any, Any], message: dict[str, Any]) -> None:
    response = await gateway.post(URL, headers=MCP_HEADERS, json=message)
    challenge = response.headers["WWW-Authenticate"]
    body = await response.json()
    assert response.status == 401
    assert challenge.startswith("Bearer ")
    assert 'resource_metadata="http://127.0.0.1:' in challenge
    assert "/.well-known/oauth-protected-resource/retently/mcp" in challenge
    assert 'scope="feedback:read' in challenge
    assert "error=" not in challenge  # no token was sent, so no error code (RFC 6750 3.1)
    assert body["id"] == 1 and body["error"]["data"]["reason"] == "missing_token"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b c",
                                    "Bearer " + "x" * 5000])
async def test_a_malformed_authorization_header_is_401(gateway: TestClient[Any, Any],
                                                       header: str) -> None:
    response = await gateway.post(URL, headers={**MCP_HEADERS, "Authorization": header},
                                  json=rpc("tools/list"))
    assert response.status == 401
    assert "error=" in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("first, second", [
    ("rtly_mcp_pat_demoanalyst_s3cr3t", "rtly_mcp_pat_demoadmin_s3cr3t"),
    ("rtly_mcp_pat_demoadmin_s3cr3t", "rtly_mcp_pat_demoanalyst_s3cr3t"),
    ("rtly_mcp_pat_demoadmin_s3cr3t", "rtly_mcp_pat_demoadmin_s3cr3t"),
], ids=["analyst then admin", "admin then analyst", "the same twice"])
async def test_two_authorization_headers_are_refused_whichever_comes_first(
        gateway: TestClient[Any, Any], wire: MockWire, first: str, second: str) -> None:
    # Which of two credentials counts would be up to each reader (this gateway took the
    # first, a proxy in front may check the last): a request carrying two is refused.
    headers = CIMultiDict(MCP_HEADERS)
    headers.add("Authorization", f"Bearer {first}")
    headers.add("Authorization", f"Bearer {second}")
    response = await gateway.post(URL, headers=headers, json=rpc(
        "tools/call", {"name": "list_feedback", "arguments": {"limit": 1}}))
    challenge = response.headers["WWW-Authenticate"]
    assert response.status == 401
    assert 'error="invalid_request"' in challenge and "one Authorization header" in challenge
    assert (await response.json())["error"]["data"]["reason"] == "invalid_request"
    assert wire.exchanges == []
    ping = await gateway.post(URL, headers=headers, json=rpc("ping"))
    assert ping.status == 200 and "result" in await ping.json()  # anonymous: still answered


@pytest.mark.parametrize("token", ["rtly_mcp_tap_demoadmin_s3cr3t", "rtly_mcp_pat_demoadmin_",
                                   "rtly_mcp_pat__s3cr3t", "short"])
async def test_a_token_of_another_format_is_401_invalid_token_without_a_network_call(
        gateway: TestClient[Any, Any], wire: MockWire, token: str) -> None:
    response = await gateway.post(URL, headers=auth(token), json=rpc("tools/list"))
    challenge = response.headers["WWW-Authenticate"]
    assert response.status == 401
    assert 'error="invalid_token"' in challenge
    assert "not a Retently token" in challenge
    assert wire.exchanges == []


async def test_protected_resource_metadata_names_resource_and_scopes(
        gateway: TestClient[Any, Any]) -> None:
    response = await gateway.get("/.well-known/oauth-protected-resource/retently/mcp")
    document = await response.json()
    assert response.status == 200
    assert document["resource"].endswith("/retently/mcp")
    assert "pii:read" in document["scopes_supported"]
    assert document["bearer_methods_supported"] == ["header"]
    assert document["authorization_servers"]


async def test_protected_resource_metadata_of_an_unknown_endpoint_is_404(
        gateway: TestClient[Any, Any]) -> None:
    response = await gateway.get("/.well-known/oauth-protected-resource/nothing/mcp")
    assert response.status == 404


async def test_health_and_readiness(gateway: TestClient[Any, Any]) -> None:
    health = await gateway.get("/healthz")
    ready = await gateway.get("/readyz")
    assert health.status == 200
    shipped = load_tree(SHIPPED_SPECS, {})
    assert (await ready.json())["services"] == {s.name: len(s.tools) for s in shipped.services}
