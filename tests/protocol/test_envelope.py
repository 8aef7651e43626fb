"""The MCP endpoint's answers to malformed, hostile and out-of-era requests, in both eras."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from mcp_types.methods import validate_client_request

from gateway.protocol.envelope import LEGACY_VERSIONS, plainly_valid
from tests.support import MCP_HEADERS, RETENTLY_ADMIN, auth, rpc

URL = "/retently/mcp"
MODERN = "2026-07-28"


def modern(method: str, params: dict[str, Any] | None = None, id_: int = 7) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}
    return rpc(method, {**(params or {}), "_meta": meta}, id_)


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {**auth(RETENTLY_ADMIN), "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


async def post(client: TestClient[Any, Any], body: Any, headers: dict[str, str] | None = None,
               *, raw: bytes | None = None) -> tuple[int, Any]:
    response = await client.post(URL, headers=headers or auth(RETENTLY_ADMIN),
                                 data=raw, json=None if raw is not None else body)
    text = await response.text()
    return response.status, (await response.json() if text else None)


async def test_body_that_is_not_json_is_a_parse_error(gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, None, raw=b"{not json")
    assert (status, body["error"]["code"]) == (400, -32700)


async def test_invalid_utf8_is_a_parse_error(gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, None, raw=b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}')
    assert (status, body["error"]["code"]) == (400, -32700)


async def test_json_nested_ten_thousand_deep_is_a_parse_error(
        gateway: TestClient[Any, Any]) -> None:
    deep = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"a":' + b"[" * 10_000 + (
        b"]" * 10_000) + b"}}"
    status, body = await post(gateway, None, raw=deep)
    assert (status, body["error"]["code"]) == (400, -32700)


async def test_json_nested_past_the_configured_depth_is_a_parse_error(
        gateway: TestClient[Any, Any]) -> None:
    deep = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"a":' + b"[" * 100 + (
        b"]" * 100) + b"}}"
    status, body = await post(gateway, None, raw=deep)
    assert (status, body["error"]["code"]) == (400, -32700)


async def test_brackets_inside_strings_are_not_nesting(gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, rpc("ping", {"_meta": {"note": "[{" * 100}}))
    assert status == 200 and body["result"] == {}


@pytest.mark.parametrize("body", [{"hello": "world"}, {"jsonrpc": "1.0", "id": 1, "method": "ping"},
                                  {"jsonrpc": "2.0", "id": 1}, 42, "ping",
                                  {"jsonrpc": "2.0", "id": [1], "method": "ping"},
                                  {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}])
async def test_json_that_is_not_a_jsonrpc_request_is_invalid_request(
        gateway: TestClient[Any, Any], body: Any) -> None:
    status, answer = await post(gateway, body)
    assert (status, answer["error"]["code"]) == (400, -32600)


async def test_a_batch_array_is_refused(gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, [rpc("ping"), rpc("ping", id_=2)])
    assert (status, body["error"]["code"]) == (400, -32600)


async def test_unknown_method_is_method_not_found_in_the_legacy_era(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, rpc("tools/destroy"))
    assert (status, body["error"]["code"], body["id"]) == (200, -32601, 1)


async def test_unknown_method_is_404_in_the_modern_era(gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, modern("tools/destroy"), modern_headers("tools/destroy"))
    assert (status, body["error"]["code"], body["id"]) == (404, -32601, 7)


async def test_ping_method_is_gone_in_the_modern_era(gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, modern("ping"), modern_headers("ping"))
    assert (status, body["error"]["code"]) == (404, -32601)


async def test_unknown_tool_is_invalid_params(gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, rpc("tools/call", {"name": "drop_tables", "arguments": {}}))
    assert (status, body["error"]["code"]) == (200, -32602)


@pytest.mark.parametrize(("arguments", "fragments"), [
    ({}, ["required"]),
    ({"id": "5a9d595701c85b37224ab2d0", "extra": 1}, ["extra"]),
    ({"id": 12345}, ["id"]),
    ({"id": None}, ["id"]),
])
async def test_bad_arguments_are_invalid_params_listing_the_problem(
        gateway: TestClient[Any, Any], arguments: dict[str, Any], fragments: list[str]) -> None:
    status, body = await post(gateway, rpc("tools/call", {"name": "get_feedback",
                                                          "arguments": arguments}))
    assert (status, body["error"]["code"]) == (200, -32602)
    problems = " ".join(body["error"]["data"]["problems"])
    for fragment in fragments:
        assert fragment in problems


async def test_every_argument_problem_is_listed(gateway: TestClient[Any, Any]) -> None:
    arguments = {"page": 0, "limit": 5000, "sort": "sideways", "start_date": "yesterday"}
    status, body = await post(gateway, rpc("tools/call", {"name": "list_feedback",
                                                          "arguments": arguments}))
    problems = body["error"]["data"]["problems"]
    assert status == 200 and body["error"]["code"] == -32602
    assert {p.split(":")[0] for p in problems} == {"page", "limit", "sort", "start_date"}


async def test_arguments_that_are_not_an_object_are_invalid_params(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, rpc("tools/call", {"name": "get_feedback",
                                                          "arguments": ["x"]}))
    assert body["error"]["code"] == -32602


@pytest.mark.parametrize("evil", ["../customers", "a/b", "a?b=1", "a#frag", "%2Fetc",
                                  "5a9d595701c85b37224ab2d0\r\nX-Evil: 1",
                                  "https://evil.example/5a9d595701c85b37224ab2d0", ".."])
async def test_path_arguments_with_path_characters_are_refused(
        gateway: TestClient[Any, Any], evil: str) -> None:
    status, body = await post(gateway, rpc("tools/call", {"name": "get_feedback",
                                                          "arguments": {"id": evil}}))
    assert (status, body["error"]["code"]) == (200, -32602)


async def test_a_one_megabyte_string_argument_is_refused(gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, rpc("tools/call", {"name": "get_feedback",
                                                          "arguments": {"id": "a" * 1_000_000}}))
    assert (status, body["error"]["code"]) == (200, -32602)
    assert len(str(body)) < 5_000  # the problem quotes the value only briefly


async def test_a_body_over_the_size_bound_is_413(gateway: TestClient[Any, Any]) -> None:
    big = io.BytesIO(b'{"x":"' + b"a" * 1_100_000 + b'"}')
    response = await gateway.post(URL, headers=auth(RETENTLY_ADMIN), data=big)
    assert response.status == 413


async def test_wrong_content_type_is_415(gateway: TestClient[Any, Any]) -> None:
    response = await gateway.post(URL, data=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
                                  headers={**auth(RETENTLY_ADMIN), "Content-Type": "text/plain"})
    assert response.status == 415


async def test_accept_without_json_is_406(gateway: TestClient[Any, Any]) -> None:
    response = await gateway.post(URL, json=rpc("ping"),
                                  headers={**auth(RETENTLY_ADMIN), "Accept": "text/html"})
    assert response.status == 406


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
async def test_other_http_methods_are_405_with_allow_post(
        gateway: TestClient[Any, Any], method: str) -> None:
    response = await gateway.request(method, URL, headers=auth(RETENTLY_ADMIN))
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


async def test_foreign_browser_origin_is_403(gateway: TestClient[Any, Any]) -> None:
    status, _ = await post(gateway, rpc("ping"),
                           {**auth(RETENTLY_ADMIN), "Origin": "https://evil.example"})
    assert status == 403


async def test_loopback_origin_is_allowed(gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, rpc("ping"),
                              {**auth(RETENTLY_ADMIN), "Origin": "http://localhost:6274"})
    assert (status, body["result"]) == (200, {})


async def test_unsupported_protocol_version_header_is_400_naming_the_supported_ones(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, rpc("tools/list"),
                              {**auth(RETENTLY_ADMIN), "MCP-Protocol-Version": "1999-01-01"})
    assert (status, body["error"]["code"]) == (400, -32022)
    assert "2025-11-25" in body["error"]["data"]["supported"]


async def test_unsupported_modern_envelope_version_is_400(gateway: TestClient[Any, Any]) -> None:
    message = modern("tools/list")
    message["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
    headers = {**modern_headers("tools/list"), "MCP-Protocol-Version": "2099-01-01"}
    status, body = await post(gateway, message, headers)
    assert (status, body["error"]["code"]) == (400, -32022)


@pytest.mark.parametrize(("header", "value"), [("Mcp-Method", "tools/call"),
                                                ("MCP-Protocol-Version", "2025-11-25"),
                                                ("Mcp-Method", "TOOLS/LIST")])
async def test_modern_headers_that_disagree_with_the_body_are_400_header_mismatch(
        gateway: TestClient[Any, Any], header: str, value: str) -> None:
    status, body = await post(gateway, modern("tools/list"),
                              {**modern_headers("tools/list"), header: value})
    assert (status, body["error"]["code"], body["id"]) == (400, -32020, 7)


async def test_modern_tool_call_with_a_different_mcp_name_is_header_mismatch(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, modern("tools/call", {"name": "list_feedback"}),
                              modern_headers("tools/call", "get_score"))
    assert (status, body["error"]["code"]) == (400, -32020)


async def test_modern_body_without_the_version_header_is_header_mismatch(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, modern("tools/list"), auth(RETENTLY_ADMIN))
    assert (status, body["error"]["code"]) == (400, -32020)


async def test_modern_header_without_the_envelope_is_invalid_params(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, rpc("tools/list"), modern_headers("tools/list"))
    assert (status, body["error"]["code"]) == (400, -32602)


async def test_a_repeated_routing_header_is_header_mismatch(gateway: TestClient[Any, Any]) -> None:
    headers = [(k, v) for k, v in modern_headers("tools/list").items()]
    headers.append(("Mcp-Method", "tools/list"))
    response = await gateway.post(URL, json=modern("tools/list"), headers=headers)
    body = await response.json()
    assert (response.status, body["error"]["code"]) == (400, -32020)


async def test_modern_result_carries_result_type_server_info_and_cache_hints(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, modern("tools/list"), modern_headers("tools/list"))
    result = body["result"]
    assert status == 200
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-gateway/retently"
    assert result["cacheScope"] == "private" and result["ttlMs"] > 0


async def test_server_discover_lists_both_eras(gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, modern("server/discover"),
                              {**MCP_HEADERS, "MCP-Protocol-Version": MODERN,
                               "Mcp-Method": "server/discover"})
    assert status == 200
    assert {"2025-11-25", MODERN} <= set(body["result"]["supportedVersions"])
    assert body["result"]["capabilities"]["tools"] == {"listChanged": False}


async def test_legacy_initialize_creates_no_session(gateway: TestClient[Any, Any]) -> None:
    response = await gateway.post(URL, headers=MCP_HEADERS, json=rpc("initialize", {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}))
    body = await response.json()
    assert response.status == 200
    assert "Mcp-Session-Id" not in response.headers
    assert body["result"]["protocolVersion"] == "2025-06-18"
    assert body["result"]["serverInfo"]["name"] == "mcp-gateway/retently"


async def test_initialize_with_an_unknown_version_gets_the_latest_handshake_version(
        gateway: TestClient[Any, Any]) -> None:
    _, body = await post(gateway, rpc("initialize", {
        "protocolVersion": "2024-01-01", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}), MCP_HEADERS)
    assert body["result"]["protocolVersion"] == "2025-11-25"


async def test_initialize_with_malformed_params_is_invalid_params(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, rpc("initialize", {"protocolVersion": 5}), MCP_HEADERS)
    assert (status, body["error"]["code"]) == (200, -32602)


@pytest.mark.parametrize("era_headers", [{}, {"MCP-Protocol-Version": MODERN}])
async def test_notifications_are_accepted_with_202_and_no_body(
        gateway: TestClient[Any, Any], era_headers: dict[str, str]) -> None:
    response = await gateway.post(URL, headers={**MCP_HEADERS, **era_headers},
                                  json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert response.status == 202
    assert await response.read() == b""


async def test_a_posted_response_is_accepted_in_the_legacy_era_only(
        gateway: TestClient[Any, Any]) -> None:
    message = {"jsonrpc": "2.0", "id": 3, "result": {}}
    legacy = await gateway.post(URL, headers=MCP_HEADERS, json=message)
    modern_answer = await gateway.post(URL, json=message,
                                       headers={**MCP_HEADERS, "MCP-Protocol-Version": MODERN})
    assert legacy.status == 202
    assert modern_answer.status == 400


async def test_unknown_endpoint_is_404(gateway: TestClient[Any, Any]) -> None:
    response = await gateway.post("/nothing/mcp", headers=MCP_HEADERS, json=rpc("ping"))
    assert response.status == 404


@pytest.mark.parametrize("version", ["2025-03-26", "2025-06-18", "2025-11-25", MODERN])
async def test_tool_results_pass_the_version_surface_check_they_skip(
        gateway: TestClient[Any, Any], version: str) -> None:
    """Default tool-call results skip per-call validation; they must pass it all the same."""
    from mcp_types.methods import serialize_server_result

    if version == MODERN:
        status, body = await post(gateway, modern("tools/call", {"name": "ping", "arguments": {}}),
                                  modern_headers("tools/call", "ping"))
    else:
        status, body = await post(gateway, rpc("tools/call", {"name": "ping", "arguments": {}}),
                                  {**auth(RETENTLY_ADMIN), "MCP-Protocol-Version": version})
    result = body["result"]
    assert status == 200
    assert serialize_server_result("tools/call", version, result) == result


PLAIN_SHAPES = [
    *[(method, {}) for method in ("tools/list", "resources/list", "resources/templates/list",
                                  "prompts/list", "ping")],
    ("tools/call", {"name": "list_feedback"}),
    ("tools/call", {"name": "list_feedback", "arguments": {"limit": 5, "x": [None, {"y": 1}]}}),
]


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
@pytest.mark.parametrize(("method", "params"), PLAIN_SHAPES)
def test_shapes_let_past_the_surface_check_pass_it_in_every_legacy_version(
        version: str, method: str, params: dict[str, Any]) -> None:
    assert plainly_valid(method, params)
    validate_client_request(method, version, params)  # raises if the shortcut were wrong


@pytest.mark.parametrize(("method", "params"), [
    ("tools/call", {}),
    ("tools/call", {"name": 5}),
    ("tools/call", {"name": "x", "arguments": []}),
    ("tools/call", {"name": "x", "arguments": None}),
    ("tools/call", {"name": "x", "_meta": {}}),
    ("tools/list", {"cursor": 5}),
    ("initialize", {}),
    ("resources/read", {}),
    ("prompts/get", {}),
])
def test_other_shapes_get_the_full_surface_check(method: str, params: dict[str, Any]) -> None:
    assert not plainly_valid(method, params)


async def test_a_tool_call_with_a_wrong_name_type_is_still_refused(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await post(gateway, rpc("tools/call", {"name": 5, "arguments": {}}))
    assert status == 200 and body["error"]["code"] == -32602


def test_serving_does_not_import_the_sdk_client_and_server() -> None:
    probe = ("import sys, gateway.server.app, gateway.server.cli; "
             "import gateway.protocol.sdk_inbound as i; "
             "print('mcp' in sys.modules, 'starlette' in sys.modules, "
             "i.classify_inbound_request.__code__.co_filename)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,  # noqa: S603
                         check=True).stdout.split()
    assert out[:2] == ["False", "False"]  # only mcp_types and the inbound checks are loaded
    assert out[2].endswith("mcp/shared/inbound.py")  # ...and those run the SDK's own code
