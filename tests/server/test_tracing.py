"""OpenTelemetry, when on: a span per MCP request continuing the caller's trace, a child span per
upstream exchange, and the child's context sent upstream as `traceparent`. Off (the default),
the caller's own `traceparent` is forwarded unchanged and no span is made."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.server.app import create_app
from gateway.settings import Settings
from gateway.telemetry import tracing
from tests.faults import FaultServer, desk_specs, running
from tests.support import MCP_HEADERS, AiohttpClient, rpc

TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
async def upstream() -> AsyncIterator[FaultServer]:
    async with running(FaultServer()) as server:
        yield server


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider.get_tracer("test"))
    yield exporter
    tracing.disable()


async def call_read_item(aiohttp_client: AiohttpClient, tmp_path: Path,
                         upstream: FaultServer) -> None:
    specs = desk_specs(tmp_path, upstream.url, upstream.url)
    client = await aiohttp_client(create_app(Settings(specs_dir=specs, log_json=True)))
    answer = await client.post("/desk/mcp", json=rpc("tools/call", {
        "name": "read_item", "arguments": {}}), headers={
        **MCP_HEADERS, "Authorization": "Bearer alice", "traceparent": TRACEPARENT})
    assert (await answer.json())["result"]["isError"] is False


async def test_a_request_span_continues_the_callers_trace_and_its_upstream_child_is_sent(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer,
        spans: InMemorySpanExporter) -> None:
    await call_read_item(aiohttp_client, tmp_path, upstream)
    finished = {span.name: span for span in spans.get_finished_spans()}
    server, client = finished["mcp tools/call"], finished["upstream GET"]
    assert format(server.context.trace_id, "032x") == TRACE
    assert server.parent is not None and format(server.parent.span_id, "016x") == CALLER_SPAN
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    sent = upstream.received[-1].headers["traceparent"]
    assert sent == f"00-{TRACE}-{format(client.context.span_id, '016x')}-01"


async def test_without_tracing_the_callers_traceparent_is_forwarded_as_is(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer) -> None:
    assert not tracing.enabled()
    await call_read_item(aiohttp_client, tmp_path, upstream)
    assert upstream.received[-1].headers["traceparent"] == TRACEPARENT
