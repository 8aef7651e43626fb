"""Every `tests:` case written in the shipped tool specs, run through the MCP endpoint.

arguments -> expected upstream request -> upstream fixture -> expected tool result. The upstream
(and the token introspection of services that use it) is a respx router behind the in-memory
wire.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import respx
from aiohttp.test_utils import TestClient

from gateway.server.app import create_app
from gateway.settings import SHIPPED_SPECS, Settings
from gateway.spec.cases import ToolTestCase, UpstreamFixture
from gateway.spec.compiled import CompiledService, CompiledTool
from gateway.spec.loader import load_tree
from gateway.upstream.mock_wire import MockWire
from tests.support import AiohttpClient, auth, rpc

REGISTRY = load_tree(SHIPPED_SPECS, {"MCP_GATEWAY_CONFORMANCE": "true"})
CASE_TIME = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
"""Spec test cases run at this moment, so `{now...}` templates give the same values every day."""
TOKENS = {"retently": "rtly_mcp_pat_casetester_s3cr3t", "refiner": "refiner_case_tester"}
CASES = [
    pytest.param(service, tool, case, id=f"{tool.name}: {case.name}")
    for service in REGISTRY.services
    for tool in service.tools.values()
    for case in tool.spec.tests
]


def contains(actual: Any, expected: Any) -> bool:
    """Objects match key by key (extra keys allowed); lists item by item; scalars equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) >= len(expected) and all(
            contains(a, e) for a, e in zip(actual, expected, strict=False))
    return bool(actual == expected)


def test_every_shipped_tool_has_a_spec_test_case() -> None:
    untested = [t.name for s in REGISTRY.services for t in s.tools.values() if not t.spec.tests]
    assert untested == []


def _answers(case: ToolTestCase) -> list[httpx.Response]:
    fixtures = case.upstream if isinstance(case.upstream, list) else [
        case.upstream or UpstreamFixture()]
    return [httpx.Response(f.status, content=orjson.dumps(f.body),
                           headers={"content-type": "application/json", **f.headers})
            for f in fixtures]


def _introspection(service: CompiledService, case: ToolTestCase) -> dict[str, Any]:
    scopes = case.scopes if case.scopes is not None else [s.name for s in service.spec.scopes]
    wanted = service.spec.auth.audience
    named = [a for a in ([wanted] if isinstance(wanted, str) else wanted or [])
             if "{resource}" not in a]
    audience = {"aud": named[0]} if named else {}
    return {"active": True, "scope": " ".join(scopes), "sub": "user_case",
            "account_id": "acc_case", "exp": 4102444800, **audience, **case.claims}


async def _call(client: TestClient[Any, Any], service: CompiledService, tool: CompiledTool,
                arguments: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    token = TOKENS.get(service.name, "case_tester_token")
    response = await client.post(service.spec.endpoint, headers=auth(token),
                                 json=rpc("tools/call", {"name": tool.name,
                                                         "arguments": arguments}))
    return response.status, await response.json()


@pytest.mark.parametrize(("service", "tool", "case"), CASES)
async def test_spec_case(aiohttp_client: AiohttpClient, settings: Settings,
                         router: respx.MockRouter, wire: MockWire, service: CompiledService,
                         tool: CompiledTool, case: ToolTestCase) -> None:
    base = service.spec.upstream.base_url
    introspection_url = service.spec.auth.introspection_url
    answers = _answers(case)
    gateway = await aiohttp_client(create_app(settings, REGISTRY, clock=lambda: CASE_TIME,
                                              wire=wire))
    if introspection_url:
        router.post(introspection_url).mock(
            return_value=httpx.Response(200, json=_introspection(service, case)))
    served: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        served.append(request)
        return answers[min(len(served), len(answers)) - 1]

    router.route(host=urlsplit(base).hostname).mock(side_effect=answer)
    status, body = await _call(gateway, service, tool, case.arguments)
    if case.confirm:
        preview = body["result"]["structuredContent"]
        assert preview["status"] == "preview" and preview["changed"] is False
        assert all(r.method == "GET" for r in served), "a preview changed something"
        status, body = await _call(gateway, service, tool, {
            **case.arguments, "confirmation_token": preview["confirmation_token"]})

    if case.protocol_error is not None:
        assert body["error"]["code"] == case.protocol_error, body
        assert served == []
        return
    assert status == 200, body
    result = body["result"]
    if case.expect_calls is not None:
        assert len(served) == case.expect_calls
    if tool.spec.kind == "write" and not case.confirm:
        assert all(r.method == "GET" for r in served), "a preview changed something"
    if case.expect_request is not None:
        assert served, "no upstream request was made"
        _check_request(served[-1], case, base)
    assert result["isError"] is case.expect.is_error, result
    text = " ".join(block.get("text", "") for block in result["content"])
    for needle in case.expect.text_contains:
        assert needle in text
    for needle in case.expect.text_excludes:
        assert needle not in text
    if case.expect.structured is not None:
        assert contains(result["structuredContent"], case.expect.structured), result


def _check_request(request: httpx.Request, case: ToolTestCase, base: str) -> None:
    expected = case.expect_request
    assert expected is not None
    if expected.method is not None:
        assert request.method == expected.method
    if expected.path is not None:
        assert request.url.raw_path.split(b"?")[0].decode() == urlsplit(base).path + expected.path
    if expected.query is not None:
        query = parse_qs(request.url.query.decode(), keep_blank_values=True)
        flat = {k: v[0] if len(v) == 1 else v for k, v in query.items()}
        assert flat == expected.query
    if expected.body is not None:
        assert orjson.loads(request.content) == expected.body
