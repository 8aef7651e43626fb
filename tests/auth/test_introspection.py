"""Token -> principal through the endpoint, for a service whose resolver is RFC 7662 introspection.

A small spec tree of its own (tmp_path) keeps these tests independent of the shipped catalogs; the
authorization server and the upstream are faked at the network edge, and the clock is injected.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import respx
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from gateway.auth.resolver import IntrospectionBounds, TokenResolver
from gateway.settings import SHIPPED_SPECS
from gateway.spec.loader import load_tree
from gateway.upstream.mock_wire import MockWire
from tests.support import (
    MCP_HEADERS,
    AiohttpClient,
    Clock,
    auth,
    gateway_app,
    rpc,
    service_tree,
)

URL = "/probe/mcp"
INTROSPECT = "https://auth.probe.test/oauth/introspect"
API = "api.probe.test"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = int(START.timestamp())
FAR = T0 + 365 * 86_400

READER = "probe_pat_reader_s3cret"
ADMIN = "probe_pat_admin_s3cret"
EXPIRED = "probe_pat_expired_s3cret"
REVOKED = "probe_pat_revoked_s3cret"
STALE = "probe_pat_stale_s3cret"
SHORT = "probe_pat_short_s3cret"
FOREIGN = "probe_pat_foreign_s3cret"
NO_AUDIENCE = "probe_pat_noaud_s3cret"
BOUND = "probe_pat_bound_s3cret"
ALTERNATE = "probe_pat_alternate_s3cret"
LOCAL = "probe_pat_local_s3cret"
PUBLIC_URL = "https://mcp.probe.test"

SERVICE = """
version: 1
name: probe
title: Probe
endpoint: /probe/mcp
upstream:
  base_url: https://api.probe.test
  credential: {{header: Authorization, format: "Bearer {{token}}"}}
auth:
  resolver: introspection
  introspection_url: https://auth.probe.test/oauth/introspect
  claims: {{scopes: scp, subject: uid, account: tenant}}
  cache_ttl_s: {cache_ttl_s}
  token_pattern: '^probe_pat_[A-Za-z0-9]+_[A-Za-z0-9]+$'
  anonymous_tools: [ping]
  authorization_servers: [https://auth.probe.test]
{audience}
scopes:
  - {{name: "items:read"}}
  - {{name: "items:admin"}}
"""
TOOLS = """
version: 1
tools:
  - name: ping
    kind: meta
    description: Liveness probe.
    result: {pong: true, at: '{now}'}
  - name: list_items
    kind: read
    description: List items.
    scopes: ["items:read"]
    request: {method: GET, path: /items}
  - name: whoami
    kind: read
    description: The verified caller.
    scopes: ["items:read"]
    result: {account: '{principal.account}', subject: '{principal.subject}'}
  - name: admin_report
    kind: read
    description: An admin-only report.
    scopes: ["items:read", "items:admin"]
    request: {method: GET, path: /admin/report}
"""


def claims(scope: str, subject: str, *, exp: int = FAR, active: bool = True,
           aud: Any = ("urn:probe",)) -> dict[str, Any]:
    answer: dict[str, Any] = {"active": active, "scp": scope, "uid": subject,
                              "tenant": "acc_" + subject, "exp": exp}
    if aud is not None:
        answer["aud"] = list(aud) if isinstance(aud, tuple) else aud
    return answer


TOKENS: dict[str, dict[str, Any]] = {
    READER: claims("items:read", "reader"),
    ADMIN: claims("items:read items:admin", "admin"),
    EXPIRED: {"active": False},
    REVOKED: {"active": False},
    STALE: claims("items:read", "stale", exp=T0 - 60),
    SHORT: claims("items:read", "short", exp=T0 + 30),
    FOREIGN: claims("items:read", "foreign", aud="urn:someone-else"),
    NO_AUDIENCE: claims("items:read", "noaud", aud=None),
    BOUND: claims("items:read", "bound", aud=("urn:x", f"{PUBLIC_URL}/probe/mcp")),
    ALTERNATE: claims("items:read", "alternate", aud="urn:alternate"),
    LOCAL: claims("items:read", "local", aud="http://localhost/probe/mcp"),
}


@dataclass
class Authority:
    """The authorization server: answers from TOKENS, or fails the way a test asks."""

    mode: str = "ok"
    stalled: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.mode == "down":
            raise httpx.ConnectError("connection refused")
        if self.mode == "slow":
            await self.stalled.wait()  # never set: only the gateway's timeout ends the wait
        if self.mode == "500":
            return httpx.Response(500, json={"error": "server_error"})
        if self.mode == "html":
            return httpx.Response(200, text="<html>login</html>",
                                  headers={"content-type": "text/html"})
        if self.mode == "list":
            return httpx.Response(200, json=[{"active": True}])
        token = parse_qs(request.content.decode()).get("token", [""])[0]
        return httpx.Response(200, json=TOKENS.get(token, {"active": False}))


@dataclass
class Network:
    router: respx.MockRouter
    authority: Authority
    introspection: respx.Route
    upstream: respx.Route


@pytest.fixture
def network(router: respx.MockRouter) -> Network:
    authority = Authority()
    introspection = router.post(INTROSPECT).mock(side_effect=authority)
    upstream = router.route(host=API).mock(
        return_value=httpx.Response(200, json={"items": [{"id": 1}]}))
    return Network(router, authority, introspection, upstream)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


Start = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def start(aiohttp_client: AiohttpClient, tmp_path: Path, clock: Clock, network: Network,
          wire: MockWire) -> Start:
    """The probe service's gateway, its audience and cache lifetime as a test asks."""

    async def started(*, audience: str | None = "urn:probe", cache_ttl_s: int = 60,
                      **settings: Any) -> TestClient[Any, Any]:
        line = f"  audience: {audience}" if audience is not None else ""
        specs = service_tree(tmp_path, "probe",
                             SERVICE.format(cache_ttl_s=cache_ttl_s, audience=line), TOOLS)
        return await aiohttp_client(gateway_app(wire, specs_dir=specs, clock=clock, **settings))

    return started


@pytest.fixture
async def gateway(start: Start) -> TestClient[Any, Any]:
    return await start()


async def post(client: TestClient[Any, Any], message: dict[str, Any],
               headers: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One request, bounded in time; a body that is not JSON comes back as {"text": ...}."""
    async with asyncio.timeout(5):  # never a hang
        response = await client.post(URL, headers=headers, json=message)
        text = await response.text()
    body: dict[str, Any] = (orjson.loads(text) if response.content_type == "application/json"
                            else {"text": text})
    return response.status, dict(response.headers), body


def call(name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return rpc("tools/call", {"name": name, "arguments": arguments or {}})


INITIALIZE = rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                "clientInfo": {"name": "t", "version": "1"}})
MODERN = "2026-07-28"
DISCOVER = rpc("server/discover", {"_meta": {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}})


def listed(body: dict[str, Any]) -> set[str]:
    return {tool["name"] for tool in body["result"]["tools"]}


# --- scopes decide what is listed and what may be called -----------------------------------


async def test_tools_list_shows_only_the_tools_the_token_scopes_allow(
        gateway: TestClient[Any, Any]) -> None:
    _, _, reader = await post(gateway, rpc("tools/list"), auth(READER))
    _, _, admin = await post(gateway, rpc("tools/list"), auth(ADMIN))
    assert listed(reader) == {"ping", "list_items", "whoami"}
    assert listed(admin) == {"ping", "list_items", "whoami", "admin_report"}


async def test_calling_a_tool_without_its_scope_is_403_naming_the_missing_scope(
        gateway: TestClient[Any, Any], network: Network) -> None:
    status, headers, body = await post(gateway, call("admin_report"), auth(READER))
    challenge = headers["WWW-Authenticate"]
    assert status == 403
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="items:admin"' in challenge
    assert body["id"] == 1
    assert body["error"]["data"]["required_scopes"] == ["items:admin"]
    assert "items:admin" in body["error"]["message"]
    assert not network.upstream.called


async def test_a_tool_within_the_token_scopes_is_called_with_the_caller_token(
        gateway: TestClient[Any, Any], network: Network) -> None:
    status, _, body = await post(gateway, call("list_items"), auth(READER))
    assert status == 200
    assert body["result"]["isError"] is False
    assert network.upstream.calls.last.request.headers["Authorization"] == f"Bearer {READER}"


async def test_the_principal_comes_from_the_claims_the_service_names(
        gateway: TestClient[Any, Any]) -> None:
    _, _, body = await post(gateway, call("whoami"), auth(READER))
    assert body["result"]["structuredContent"] == {"account": "acc_reader", "subject": "reader"}


async def test_introspection_posts_the_token_as_a_form_never_in_the_url(
        gateway: TestClient[Any, Any], network: Network) -> None:
    await post(gateway, rpc("tools/list"), auth(READER))
    sent = network.introspection.calls.last.request
    assert sent.method == "POST"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(sent.content.decode()) == {"token": [READER]}
    assert READER not in str(sent.url)


# --- caching ----------------------------------------------------------------------------------


async def test_an_introspection_result_is_reused_without_asking_again(
        gateway: TestClient[Any, Any], network: Network) -> None:
    first, _, _ = await post(gateway, rpc("tools/list"), auth(READER))
    second, _, _ = await post(gateway, call("list_items"), auth(READER))
    assert (first, second) == (200, 200)
    assert network.introspection.call_count == 1


async def test_each_answer_from_the_cache_is_counted_as_a_hit(
        gateway: TestClient[Any, Any], network: Network) -> None:
    def counted(result: str) -> float:
        return REGISTRY.get_sample_value("mcp_gateway_introspection_cache_total",
                                         {"service": "probe", "result": result}) or 0.0

    hits, misses = counted("hit"), counted("miss")
    for _ in range(3):
        assert (await post(gateway, rpc("tools/list"), auth(READER)))[0] == 200
    assert (counted("hit") - hits, counted("miss") - misses) == (2, 1)


async def test_each_token_is_introspected_on_its_own(
        gateway: TestClient[Any, Any], network: Network) -> None:
    await post(gateway, rpc("tools/list"), auth(READER))
    await post(gateway, rpc("tools/list"), auth(ADMIN))
    await post(gateway, rpc("tools/list"), auth(READER))
    assert network.introspection.call_count == 2


async def test_a_cached_result_is_asked_again_after_cache_ttl_s(
        gateway: TestClient[Any, Any], network: Network, clock: Clock) -> None:
    await post(gateway, rpc("tools/list"), auth(READER))
    clock.advance(59)
    await post(gateway, rpc("tools/list"), auth(READER))
    assert network.introspection.call_count == 1
    clock.advance(2)
    status, _, _ = await post(gateway, rpc("tools/list"), auth(READER))
    assert status == 200
    assert network.introspection.call_count == 2


async def test_a_cached_result_never_outlives_the_token_exp(
        gateway: TestClient[Any, Any], network: Network, clock: Clock) -> None:
    before, _, _ = await post(gateway, rpc("tools/list"), auth(SHORT))
    clock.advance(29)
    still, _, _ = await post(gateway, rpc("tools/list"), auth(SHORT))
    assert (before, still, network.introspection.call_count) == (200, 200, 1)
    clock.advance(2)
    after, headers, _ = await post(gateway, rpc("tools/list"), auth(SHORT))
    assert network.introspection.call_count == 2
    assert after == 401
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]


async def test_a_cache_ttl_of_zero_asks_every_time(
        start: Start, network: Network) -> None:
    gateway = await start(cache_ttl_s=0)
    for _ in range(3):
        status, _, _ = await post(gateway, rpc("tools/list"), auth(READER))
        assert status == 200
    assert network.introspection.call_count == 3


# --- refused tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", [EXPIRED, REVOKED, STALE])
async def test_an_inactive_or_expired_token_is_401_invalid_token_with_a_description(
        gateway: TestClient[Any, Any], network: Network, token: str) -> None:
    status, headers, body = await post(gateway, call("list_items"), auth(token))
    challenge = headers["WWW-Authenticate"]
    assert status == 401
    assert 'error="invalid_token"' in challenge
    assert 'error_description="' in challenge
    assert 'resource_metadata="' in challenge
    assert body["error"]["data"]["reason"] == "invalid_token"
    assert not network.upstream.called


async def test_a_refused_token_is_remembered_for_30_seconds_then_asked_again(
        gateway: TestClient[Any, Any], network: Network, clock: Clock) -> None:
    await post(gateway, rpc("tools/list"), auth(REVOKED))
    clock.advance(29)
    again, _, _ = await post(gateway, rpc("tools/list"), auth(REVOKED))
    assert (again, network.introspection.call_count) == (401, 1)
    clock.advance(2)
    later, _, _ = await post(gateway, rpc("tools/list"), auth(REVOKED))
    assert (later, network.introspection.call_count) == (401, 2)


@pytest.mark.parametrize("token", [
    "probe_tap_reader_s3cret",
    "other_pat_reader_s3cret",
    "probe_pat_reader_",
    "probe_pat__s3cret",
    "probe_pat_reader_" + "a" * 4_100,
], ids=["wrong prefix", "another vendor", "empty secret", "empty id", "4 KB"])
async def test_a_malformed_personal_token_is_401_without_any_network_call(
        gateway: TestClient[Any, Any], network: Network, token: str) -> None:
    status, headers, _ = await post(gateway, rpc("tools/list"), auth(token))
    assert status == 401
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert network.router.calls.call_count == 0


async def test_a_10_kb_token_is_401_without_any_network_call_and_is_not_echoed(
        gateway: TestClient[Any, Any], network: Network) -> None:
    token = "probe_pat_reader_" + "a" * 10_000
    status, headers, body = await post(gateway, rpc("tools/list"), auth(token))
    assert status == 401
    assert 'error="invalid_token"' in headers.get("WWW-Authenticate", "")
    assert token[:40] not in str(body)
    assert network.router.calls.call_count == 0


# --- the authorization server cannot answer -----------------------------------------------------


@pytest.mark.parametrize("mode", ["down", "500", "html", "list"])
async def test_an_introspection_endpoint_that_cannot_answer_is_503_with_retry_after(
        gateway: TestClient[Any, Any], network: Network, mode: str) -> None:
    network.authority.mode = mode
    status, headers, body = await post(gateway, call("list_items"), auth(READER))
    assert status == 503
    assert int(headers["Retry-After"]) > 0
    assert body["id"] == 1
    assert body["error"]["code"] == -32603
    assert network.introspection.called
    assert not network.upstream.called  # never treated as valid


async def test_a_slow_introspection_endpoint_is_503_after_its_timeout_not_a_hang(
        start: Start, network: Network) -> None:
    gateway = await start(introspection_timeout_s=0.2)
    network.authority.mode = "slow"
    status, headers, body = await post(gateway, call("list_items"), auth(READER))
    assert status == 503
    assert "Retry-After" in headers
    assert "0.2 seconds" in body["error"]["message"]
    assert not network.upstream.called


async def test_an_unavailable_answer_is_not_cached(
        gateway: TestClient[Any, Any], network: Network) -> None:
    network.authority.mode = "down"
    failed, _, _ = await post(gateway, rpc("tools/list"), auth(READER))
    network.authority.mode = "ok"
    recovered, _, body = await post(gateway, rpc("tools/list"), auth(READER))
    assert (failed, recovered) == (503, 200)
    assert "list_items" in listed(body)
    assert network.introspection.call_count == 2


@pytest.mark.parametrize("mode", ["down", "500", "slow"])
@pytest.mark.parametrize("message", [INITIALIZE, rpc("ping"), call("ping")],
                         ids=["initialize", "ping", "ping tool"])
async def test_connecting_still_works_while_introspection_is_unavailable(
        start: Start, network: Network,
        mode: str, message: dict[str, Any]) -> None:
    gateway = await start(introspection_timeout_s=0.1)
    network.authority.mode = mode
    status, _, body = await post(gateway, message, auth(READER))
    assert status == 200
    assert "result" in body
    assert body["result"].get("isError") is not True


# --- audience ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "expected"), [
    (READER, 200),         # aud holds the service's audience
    (NO_AUDIENCE, 401),    # no aud claim: issued for no resource, so not for this one
    (FOREIGN, 401),        # issued for another resource
])
async def test_the_audience_is_checked_when_the_service_sets_one(
        gateway: TestClient[Any, Any], token: str, expected: int) -> None:
    status, headers, _ = await post(gateway, rpc("tools/list"), auth(token))
    assert status == expected
    if expected == 401:
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]


@pytest.mark.parametrize(("token", "expected"), [
    (BOUND, 200),          # issued for this endpoint's own URL
    (ALTERNATE, 200),      # issued for another of the service's audiences
    (READER, 401),         # issued for neither
    (NO_AUDIENCE, 401),    # issued for no resource at all: refused by default
])
async def test_an_audience_list_and_the_resource_placeholder(
        start: Start, network: Network, token: str, expected: int) -> None:
    gateway = await start(audience="['{resource}', 'urn:alternate']", public_url=PUBLIC_URL)
    status, _, _ = await post(gateway, rpc("tools/list"),
                              {**auth(token), "Host": urlsplit(PUBLIC_URL).netloc})
    assert status == expected


async def test_a_token_accepted_at_one_url_is_still_refused_at_another(
        start: Start, network: Network) -> None:
    """Without a public URL each loopback name is its own resource: a token issued for one
    is refused at the other, however often it was accepted at the first."""
    gateway = await start(audience="'{resource}'")
    at_localhost = {**auth(LOCAL), "Host": "localhost"}
    at_loopback = {**auth(LOCAL), "Host": "127.0.0.1"}
    assert (await post(gateway, rpc("tools/list"), at_localhost))[0] == 200
    assert (await post(gateway, rpc("tools/list"), at_localhost))[0] == 200
    assert (await post(gateway, rpc("tools/list"), at_loopback))[0] == 401
    assert (await post(gateway, rpc("tools/list"), at_localhost))[0] == 200
    assert network.introspection.call_count == 1


async def test_a_service_may_accept_tokens_that_name_no_audience(
        start: Start, network: Network) -> None:
    gateway = await start(audience="urn:probe\n  require_audience: false")
    assert (await post(gateway, rpc("tools/list"), auth(NO_AUDIENCE)))[0] == 200
    assert (await post(gateway, rpc("tools/list"), auth(FOREIGN)))[0] == 401


async def test_without_a_service_audience_any_aud_is_accepted(
        start: Start, network: Network) -> None:
    gateway = await start(audience=None)
    status, _, _ = await post(gateway, rpc("tools/list"), auth(FOREIGN))
    assert status == 200


# --- the anonymous surface --------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [
    None,
    "Basic dXNlcjpwYXNz",
    "Bearer not a token",
    "Bearer probe_tap_reader_s3cret",
    f"Bearer {REVOKED}",
], ids=["no token", "basic", "malformed", "wrong format", "revoked"])
@pytest.mark.parametrize("message", [INITIALIZE, rpc("ping"), call("ping"), DISCOVER],
                         ids=["initialize", "ping", "ping tool", "server/discover"])
async def test_anonymous_methods_work_without_a_token_and_with_a_bad_one(
        gateway: TestClient[Any, Any], network: Network, authorization: str | None,
        message: dict[str, Any]) -> None:
    headers = dict(MCP_HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization
    if message is DISCOVER:
        headers |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"}
    status, _, body = await post(gateway, message, headers)
    assert status == 200
    assert "result" in body and "error" not in body
    assert not network.upstream.called


async def test_the_ping_tool_answers_without_a_token(gateway: TestClient[Any, Any]) -> None:
    _, _, body = await post(gateway, call("ping"), MCP_HEADERS)
    assert body["result"]["structuredContent"] == {"pong": True, "at": "2026-03-01T12:00:00Z"}


async def test_everything_else_without_a_token_is_401_without_an_error_code(
        gateway: TestClient[Any, Any], network: Network) -> None:
    status, headers, _ = await post(gateway, call("list_items"), MCP_HEADERS)
    assert status == 401
    assert "error=" not in headers["WWW-Authenticate"]
    assert network.router.calls.call_count == 0


async def test_answers_and_verdicts_are_kept_under_the_tokens_hash_never_the_token() -> None:
    service = load_tree(SHIPPED_SPECS, {}).get("retently")
    assert service is not None
    token = "rtly_mcp_pat_kept_s3cr3t"

    async def introspect(_url: str, _token: str) -> dict[str, Any]:
        return {"active": True, "scope": "feedback:read", "sub": "kept", "exp": 10_000.0,
                "aud": "urn:mcp-gateway:retently"}

    resolver = TokenResolver(introspect, lambda: 1_000.0, IntrospectionBounds(10, 10, 10))
    for _ in range(2):
        await resolver.resolve(service, token, "http://127.0.0.1/retently/mcp", address=None)
    keys = [*resolver._cache, *(k for kept in resolver._verdicts.values() for k in kept)]
    assert keys and all(token not in key for key in keys)
    assert all(hashlib.sha256(token.encode()).hexdigest() in key for key in keys)


async def test_the_token_cache_stays_bounded_and_keeps_recent_answers() -> None:
    service = load_tree(SHIPPED_SPECS, {}).get("retently")
    assert service is not None
    now = [1_000.0]
    asked: list[str] = []

    async def introspect(_url: str, token: str) -> dict[str, Any]:
        asked.append(token)
        return {"active": True, "scope": "feedback:read", "sub": token, "exp": now[0] + 3600,
                "aud": "urn:mcp-gateway:retently"}

    resolver = TokenResolver(introspect, lambda: now[0], IntrospectionBounds(1_000, 1_000, 10),
                             max_entries=50)
    for number in range(200):
        await resolver.resolve(service, f"rtly_mcp_pat_t{number}_x", address=None)
    assert len(resolver._cache) <= 50
    asked.clear()
    # the newest answers are still known
    await resolver.resolve(service, "rtly_mcp_pat_t199_x", address=None)
    assert asked == []
    now[0] += 3601  # past every token's expiry: asked again, never served stale
    await resolver.resolve(service, "rtly_mcp_pat_t199_x", address=None)
    assert asked == ["rtly_mcp_pat_t199_x"]
