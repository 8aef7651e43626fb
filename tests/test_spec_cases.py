"""Every `tests:` case written in the shipped tool specs, run through the MCP endpoint.

arguments -> expected upstream request -> upstream fixture -> expected tool result; the
upstream is faked at the network edge with respx.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import respx
from aiohttp.test_utils import TestClient

from gateway.loader import load_tree
from gateway.registry import CompiledService, CompiledTool
from gateway.settings import SHIPPED_SPECS
from gateway.specs import ToolTestCase
from tests.conftest import auth, rpc

REGISTRY = load_tree(SHIPPED_SPECS, {})
TOKENS = {"retently": "rtly_mcp_pat_demoadmin_s3cr3t", "refiner": "refiner_demo_full"}
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


@pytest.mark.parametrize(("service", "tool", "case"), CASES)
async def test_spec_case(gateway: TestClient[Any, Any], service: CompiledService,
                         tool: CompiledTool, case: ToolTestCase) -> None:
    base = service.spec.upstream.base_url
    with respx.mock(assert_all_called=False) as mock:
        upstream = case.upstream
        route = mock.route(host=urlsplit(base).hostname).mock(
            return_value=httpx.Response(
                upstream.status if upstream else 200,
                content=orjson.dumps(upstream.body if upstream else {}),
                headers={"content-type": "application/json", **(upstream.headers if upstream else {})},
            ))
        response = await gateway.post(
            service.spec.endpoint, headers=auth(TOKENS[service.name]),
            json=rpc("tools/call", {"name": tool.name, "arguments": case.arguments}))
        body = await response.json()

        if case.protocol_error is not None:
            assert body["error"]["code"] == case.protocol_error, body
            assert not route.called
            return
        assert response.status == 200, body
        result = body["result"]
        if tool.spec.request is None:
            assert not route.called
        else:
            assert route.call_count == 1
            _check_request(route.calls.last.request, case, base)
        assert result["isError"] is case.expect.is_error, result
        text = result["content"][0]["text"]
        for needle in case.expect.text_contains:
            assert needle in text
        for needle in case.expect.text_excludes:
            assert needle not in text
        if case.expect.structured is not None:
            assert contains(result["structuredContent"], case.expect.structured), result


def _check_request(request: httpx.Request, case: ToolTestCase, base: str) -> None:
    expected = case.expect_request
    if expected is None:
        return
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
