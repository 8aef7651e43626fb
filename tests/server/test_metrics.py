"""Prometheus /metrics after real calls: requests by outcome, upstream statuses and failures,
latency histograms, write phases, token checks, breakers and reloads; label values bounded; the
optional bearer token; and one log event per request, carrying what the metrics count."""

from __future__ import annotations

import http.client
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from bench.run import free_port
from gateway.server.app import create_app
from gateway.server.state import SPECS
from gateway.settings import Settings
from tests.faults import FaultServer, desk_specs, json_answer, running
from tests.support import MCP_HEADERS, AiohttpClient, first_line, rpc, start_serve


@pytest.fixture
async def upstream() -> AsyncIterator[FaultServer]:
    async with running(FaultServer()) as server:
        yield server


async def call(client: TestClient[Any, Any], method: str, params: dict[str, Any],
               token: str | None = "alice", service: str = "desk") -> int:  # noqa: S107
    headers = {**MCP_HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
    answer = await client.post(f"/{service}/mcp", json=rpc(method, params), headers=headers)
    return answer.status


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition, 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def scrape(client: TestClient[Any, Any], **headers: str) -> str:
    answer = await client.get("/metrics", headers=headers)
    assert answer.status == 200
    return await answer.text()


async def test_metrics_count_what_the_calls_did(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer) -> None:
    specs = desk_specs(tmp_path, upstream.url, upstream.url)
    client = await aiohttp_client(create_app(Settings(specs_dir=specs, log_json=True,
                                                      breaker_failures=2)))
    before = await scrape(client)
    upstream.plan("/other", json_answer({"message": "nope"}, 404))
    upstream.plan("/search", json_answer({}, 500))
    for _ in range(3):
        await call(client, "tools/call", {"name": "read_item", "arguments": {}})
    await call(client, "tools/call", {"name": "read_other", "arguments": {}})
    await call(client, "tools/call", {"name": "read_item", "arguments": {}}, token=None)
    await call(client, "tools/call", {"name": "made_up_tool", "arguments": {}})
    await call(client, "tools/call", {"name": "write_item", "arguments": {"text": "x"}})
    for _ in range(3):  # two failures open the breaker, the third is refused unsent
        await call(client, "tools/call", {"name": "search_items", "arguments": {}})
    await client.app[SPECS].reload("test")
    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    desk = {"service": "desk"}
    assert grew("mcp_gateway_requests_total", **desk, method="tools/call", tool="read_item",
                outcome="ok") == 3
    assert grew("mcp_gateway_requests_total", **desk, tool="read_other",
                outcome="upstream_error") == 1
    assert grew("mcp_gateway_requests_total", **desk, tool="read_item",
                outcome="unauthenticated") == 1
    assert grew("mcp_gateway_requests_total", **desk, tool="unknown",
                outcome="protocol_error") == 1
    assert grew("mcp_gateway_requests_total", **desk, tool="search_items",
                outcome="circuit_open") == 1
    assert grew("mcp_gateway_upstream_responses_total", **desk, status="200") == 3
    assert grew("mcp_gateway_upstream_responses_total", **desk, status="404") == 1
    assert grew("mcp_gateway_upstream_failures_total", **desk, kind="circuit_open") == 1
    assert grew("mcp_gateway_upstream_seconds_count", **desk) == 6
    assert grew("mcp_gateway_request_seconds_count", **desk, method="tools/call") == 10
    assert grew("mcp_gateway_writes_total", **desk, tool="write_item", phase="preview",
                outcome="previewed") == 1
    assert sample(after, "mcp_gateway_breaker_open", **desk) == 1
    assert grew("mcp_gateway_breaker_opened_total", **desk) == 1
    assert grew("mcp_gateway_spec_reloads_total", outcome="accepted") == 1
    digest = client.app[SPECS].current.digest
    assert sample(after, "mcp_gateway_specs_loaded_timestamp_seconds", digest=digest) > 1e9
    assert "alice" not in after


async def test_names_a_caller_makes_up_never_become_label_values(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer) -> None:
    specs = desk_specs(tmp_path, upstream.url, upstream.url)
    client = await aiohttp_client(create_app(Settings(specs_dir=specs, log_json=True)))
    for n in range(20):
        await call(client, "tools/call", {"name": f"guess_{n}", "arguments": {}})
        await call(client, f"made/up/{n}", {})
    text = await scrape(client)
    assert "guess_" not in text and "made/up" not in text
    assert sample(text, "mcp_gateway_requests_total", service="desk", method="unknown",
                  outcome="protocol_error") >= 20


async def test_metrics_can_be_kept_behind_a_bearer_token(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer) -> None:
    specs = desk_specs(tmp_path, upstream.url, upstream.url)
    client = await aiohttp_client(create_app(Settings(specs_dir=specs, log_json=True,
                                                      metrics_token="scrape-me")))
    refused = await client.get("/metrics")
    assert refused.status == 401 and "Bearer" in refused.headers["WWW-Authenticate"]
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    assert "mcp_gateway_requests" in await scrape(client, Authorization="Bearer scrape-me")


def test_each_request_leaves_one_json_log_event_with_its_outcome_and_no_token(
        tmp_path: Path) -> None:
    specs = desk_specs(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    port = free_port()
    process = start_serve(specs, port)
    try:
        first_line(process)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/desk/mcp", orjson.dumps(rpc("tools/call", {
            "name": "read_item", "arguments": {}})),
            headers={**MCP_HEADERS, "Authorization": "Bearer secret-token-xyz",
                     "MCP-Protocol-Version": "2025-06-18"})
        answer = connection.getresponse()
        assert orjson.loads(answer.read())["result"]["isError"] is True  # port 9: refused
        connection.request("GET", "/healthz")  # the same connection: kept alive
        assert connection.getresponse().read()
        connection.close()
    finally:
        process.terminate()
        _, logged = process.communicate(timeout=20)
    events = [orjson.loads(line) for line in logged.splitlines() if line.startswith("{")]
    requests = [e for e in events if e.get("path") == "/desk/mcp"]
    assert len(requests) == 1, events
    event = requests[0]
    assert event["event"] == "http_request"
    assert (event["service"], event["tool"], event["outcome"]) == (
        "desk", "read_item", "upstream_unavailable")
    assert event["status"] == 200 and event["duration_ms"] >= event["mcp_ms"] > 0
    assert event["upstream_ms"] >= 0 and len(event["who"]) == 12 and event["request_id"]
    assert "secret-token-xyz" not in logged
    assert "mcp_request" not in logged
    # The next request on the connection carries nothing of the call's summary.
    (probe,) = [e for e in events if e.get("path") == "/healthz"]
    assert probe["status"] == 200 and probe["request_id"] != event["request_id"]
    assert not {"service", "outcome", "mcp_ms", "who"} & probe.keys()
