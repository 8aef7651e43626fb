"""OAuth discovery documents: protected-resource metadata (RFC 9728) at the path-suffixed and
root well-known URIs, and the authorization server's metadata (RFC 8414) relayed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
from aiohttp.test_utils import TestClient

from gateway.upstream.mock_wire import MockWire
from tests.support import MCP_HEADERS, AiohttpClient, gateway_app, rpc

AS_METADATA = "https://app.refiner.io/.well-known/oauth-authorization-server"
PUBLIC = {"Host": "mcp.example.test"}
"""What a client of the deployment at https://mcp.example.test sends."""
DOCUMENT = {"issuer": "https://app.refiner.io",
            "authorization_endpoint": "https://app.refiner.io/api/oauth/authorize",
            "token_endpoint": "https://app.refiner.io/api/oauth/token",
            "code_challenge_methods_supported": ["S256"]}


@pytest.fixture
async def rooted(aiohttp_client: AiohttpClient, wire: MockWire) -> TestClient[Any, Any]:
    return await aiohttp_client(gateway_app(wire, root_service="refiner",
                                            public_url="https://mcp.example.test"))


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource",
                                  "/.well-known/oauth-protected-resource/refiner/mcp"])
async def test_protected_resource_metadata_is_served_at_both_well_known_uris(
        rooted: TestClient[Any, Any], path: str) -> None:
    response = await rooted.get(path, headers=PUBLIC)
    document = await response.json()
    assert response.status == 200
    assert document["resource"] == "https://mcp.example.test/refiner/mcp"
    assert document["authorization_servers"] == ["https://app.refiner.io"]
    assert set(document["scopes_supported"]) == {"mcp:projects-read", "mcp:forms-read",
                                                 "mcp:responses-read", "mcp:reporting-read"}
    assert document["bearer_methods_supported"] == ["header"]


async def test_the_root_document_needs_a_root_service_when_there_are_several(
        gateway: TestClient[Any, Any]) -> None:
    response = await gateway.get("/.well-known/oauth-protected-resource")
    assert response.status == 404


async def test_the_challenge_points_at_the_metadata_under_the_public_url(
        rooted: TestClient[Any, Any]) -> None:
    response = await rooted.post("/refiner/mcp", headers={**MCP_HEADERS, **PUBLIC},
                                 json=rpc("tools/list"))
    assert response.status == 401
    assert ('resource_metadata="https://mcp.example.test/.well-known/oauth-protected-resource'
            '/refiner/mcp"') in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server",
                                  "/.well-known/oauth-authorization-server/refiner/mcp"])
async def test_the_authorization_server_metadata_is_relayed_and_cached(
        rooted: TestClient[Any, Any], upstream: respx.MockRouter, path: str) -> None:
    route = upstream.get(AS_METADATA).mock(return_value=httpx.Response(200, json=DOCUMENT))
    first = await rooted.get(path, headers=PUBLIC)
    second = await rooted.get(path, headers=PUBLIC)
    assert first.status == second.status == 200
    assert await first.json() == DOCUMENT == await second.json()
    assert route.call_count == 1


async def test_an_unreachable_authorization_server_is_503_not_500(
        rooted: TestClient[Any, Any], upstream: respx.MockRouter) -> None:
    upstream.get(AS_METADATA).mock(side_effect=httpx.ConnectError("down"))
    response = await rooted.get("/.well-known/oauth-authorization-server", headers=PUBLIC)
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"


async def test_a_service_without_a_relayed_document_is_404(gateway: TestClient[Any, Any]) -> None:
    response = await gateway.get("/.well-known/oauth-authorization-server/retently/mcp")
    assert response.status == 404
