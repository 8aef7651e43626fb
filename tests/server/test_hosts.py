"""The public URL comes from configuration, never from the request's Host: a token issued for
another deployment is not accepted by naming that deployment's host, and nothing the gateway
sends back reflects a Host it does not serve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from aiohttp.test_utils import TestClient

from gateway.server.app import create_app
from gateway.settings import Settings
from tests.support import MCP_HEADERS, AiohttpClient, rpc

INTROSPECTION = "https://auth.probe.test/introspect"
SERVICE = """
version: 1
name: probe
title: Probe
endpoint: /probe/mcp
upstream: {base_url: "https://api.probe.test"}
auth:
  resolver: introspection
  introspection_url: https://auth.probe.test/introspect
  audience: ['{resource}']
  authorization_servers: [https://auth.probe.test]
scopes: [{name: "items:read"}]
"""
TOOLS = """
tools:
  - {name: ping, kind: meta, description: Liveness., scopes: ["items:read"], result: {pong: true}}
"""
AUDIENCES = {
    "token_for_other_deployment": "http://other.example/probe/mcp",
    "token_for_the_public_url": "https://mcp.probe.test/probe/mcp",
}


def introspection(request: httpx.Request) -> httpx.Response:
    token = parse_qs(request.content.decode())["token"][0]
    return httpx.Response(200, json={"active": True, "scope": "items:read", "sub": "u1",
                                     "aud": AUDIENCES[token]})


async def start(aiohttp_client: AiohttpClient, tmp_path: Path,
                **settings: Any) -> TestClient[Any, Any]:
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "service.yaml").write_text(SERVICE)
    (tmp_path / "probe" / "tools.yaml").write_text(TOOLS)
    return await aiohttp_client(create_app(Settings(specs_dir=tmp_path, log_json=True,
                                                    upstream_transport="httpx", **settings)))


@pytest.fixture
def authorization_server() -> Any:
    with respx.mock(assert_all_called=False, using="httpx") as router:
        router.post(INTROSPECTION).mock(side_effect=introspection)
        yield router


def call(token: str, host: str) -> dict[str, str]:
    return {**MCP_HEADERS, "Authorization": f"Bearer {token}", "Host": host}


async def test_a_token_for_another_deployment_is_not_accepted_by_naming_its_host(
        aiohttp_client: AiohttpClient, tmp_path: Path, authorization_server: Any) -> None:
    gateway = await start(aiohttp_client, tmp_path)

    answer = await gateway.post("/probe/mcp", json=rpc("tools/call", {"name": "ping"}),
                                headers=call("token_for_other_deployment", "other.example"))

    assert answer.status == 421
    assert "other.example" not in await answer.text()
    assert not authorization_server.calls  # refused before the token was even looked at


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource/probe/mcp",
                                  "/probe/mcp"])
async def test_nothing_reflects_a_host_the_gateway_does_not_serve(
        aiohttp_client: AiohttpClient, tmp_path: Path, authorization_server: Any,
        path: str) -> None:
    gateway = await start(aiohttp_client, tmp_path)

    answer = await gateway.request("GET" if "well-known" in path else "POST", path,
                                   json=rpc("tools/list"),
                                   headers={**MCP_HEADERS, "Host": "evil.example"})

    assert answer.status == 421
    assert "evil.example" not in await answer.text()
    assert "evil.example" not in answer.headers.get("WWW-Authenticate", "")


async def test_with_a_public_url_the_resource_is_always_the_public_url(
        aiohttp_client: AiohttpClient, tmp_path: Path, authorization_server: Any) -> None:
    gateway = await start(aiohttp_client, tmp_path, public_url="https://mcp.probe.test",
                          allowed_hosts=("gateway.internal:8080",))

    for host in ("mcp.probe.test", "gateway.internal:8080"):
        document = await (await gateway.get("/.well-known/oauth-protected-resource/probe/mcp",
                                            headers={"Host": host})).json()
        assert document["resource"] == "https://mcp.probe.test/probe/mcp"
        answer = await gateway.post("/probe/mcp", json=rpc("tools/list"),
                                    headers=call("token_for_the_public_url", host))
        assert answer.status == 200
    refused = await gateway.post("/probe/mcp", json=rpc("tools/list"),
                                 headers=call("token_for_the_public_url", "127.0.0.1"))
    assert refused.status == 421


async def test_a_challenge_names_the_public_url_not_the_host(
        aiohttp_client: AiohttpClient, tmp_path: Path, authorization_server: Any) -> None:
    gateway = await start(aiohttp_client, tmp_path, public_url="https://mcp.probe.test",
                          allowed_hosts=("gateway.internal:8080",))

    answer = await gateway.post("/probe/mcp", json=rpc("tools/list"),
                                headers={**MCP_HEADERS, "Host": "gateway.internal:8080"})

    assert answer.status == 401
    assert ('resource_metadata="https://mcp.probe.test/.well-known/oauth-protected-resource'
            '/probe/mcp"') in answer.headers["WWW-Authenticate"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_answer_whatever_host_they_name(
        aiohttp_client: AiohttpClient, tmp_path: Path, path: str) -> None:
    gateway = await start(aiohttp_client, tmp_path, public_url="https://mcp.probe.test")

    answer = await gateway.get(path, headers={"Host": "10.1.2.3:8080"})

    assert answer.status == 200


@pytest.mark.parametrize("value", ["ftp://x.example", "https://x.example/base",
                                   "https://x.example?a=1", "https://x .example", "x.example"])
def test_a_public_url_that_is_not_a_plain_origin_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        Settings(public_url=value)


EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - refused before anything is bound


def test_serve_on_every_interface_without_a_public_url_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run(  # noqa: S603 - this interpreter and fixed arguments, no shell
        [sys.executable, "-m", "gateway", "serve", "--host", EVERY_INTERFACE, "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "GATEWAY_PUBLIC_URL": "", "GATEWAY_LOOPBACK_ONLY": "false"})

    assert done.returncode == 2
    assert "GATEWAY_PUBLIC_URL" in done.stderr
    assert "Traceback" not in done.stderr
