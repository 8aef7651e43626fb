"""The fault table: for each way an upstream or authorization server fails, what the client is
told, how long it took, and that callers of another service stayed healthy meanwhile. The same
table is in docs/operations.md ("When an upstream fails"); this test keeps the two in step.

Each row runs against a fresh gateway (breakers start closed) in front of a fault-injecting
upstream on loopback (tests/faults.py); the service `other`, on a healthy upstream, is called
five times while the fault plays out.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.server.app import create_app
from gateway.settings import Settings
from tests.faults import (
    Fault,
    FaultServer,
    desk_specs,
    gzip_bomb,
    hang,
    huge,
    json_answer,
    raw_answer,
    reset,
    reset_mid_body,
    running,
    slow,
)
from tests.support import MCP_HEADERS, REPO, AiohttpClient, rpc

ACTIVE = json_answer({"active": True, "scope": "items", "sub": "u1", "account_id": "a1"})
FRESH_TOKENS = (f"token-{n}" for n in itertools.count())


@dataclass(frozen=True)
class Row:
    fault: str
    """As named in the docs' table."""
    path: str
    plan: Fault | None
    """None: the upstream is down (its port closed)."""
    expect: str
    """What the client is told (a fragment of the tool error, or of the HTTP 503 body)."""
    within_s: float
    tool: str = "read_item"
    http_status: int = 200
    retry_after: int | None = None
    documented: str = ""
    """What the docs' table says the caller is told, when not `expect` itself."""


ROWS = [
    Row("slow (0.5 s)", "/item", slow(0.5), '"id":"n1"', 1.5, documented="the result"),
    Row("hang", "/item", hang, "did not answer within 1 seconds", 1.6),
    Row("refused", "/item", None, "could not be reached (connection failed)", 1.0),
    Row("reset mid-body", "/item", reset_mid_body, "exchange failed", 1.0),
    Row("reset after the upstream acted", "POST /item", reset, "Outcome unknown", 1.0,
        tool="write_item"),
    Row("429 with Retry-After", "/item",
        json_answer({"message": "Slow down"}, 429, {"Retry-After": "60"}),
        "rate limit was reached; retry in 60 seconds", 1.0, retry_after=60),
    Row("429 without Retry-After", "/item", json_answer({"message": "Slow down"}, 429),
        "rate limit was reached; retry later", 1.5),
    Row("503 with Retry-After", "/item", json_answer({}, 503, {"Retry-After": "60"}),
        "service failed; retry in 60 seconds", 1.0, retry_after=60),
    Row("503 without Retry-After", "/item", json_answer({}, 503),
        "service failed; retry later", 1.5),
    Row("malformed JSON", "/item",
        raw_answer(200, b'{"id": ', {"Content-Type": "application/json"}),
        "not valid JSON", 1.0),
    Row("HTML", "/item", raw_answer(200, b"<html>down</html>", {"Content-Type": "text/html"}),
        "text/html instead of JSON", 1.0),
    Row("huge body (2 MB)", "/item", huge(2_000_000), "larger than 1 MB", 2.0),
    Row("gzip bomb (100 MB expanded)", "/item", gzip_bomb(100_000_000), "larger than 1 MB",
        2.0),
    Row("introspection hangs", "/introspect", hang, "did not answer within 0.5 seconds", 1.2,
        http_status=503),
    Row("introspection answers 500", "/introspect", json_answer({}, 500),
        "answered HTTP 500", 1.0, http_status=503),
]


@pytest.fixture
async def healthy() -> AsyncIterator[FaultServer]:
    async with running(FaultServer()) as server:
        yield server


async def call(client: TestClient[Any, Any], tool: str, arguments: dict[str, Any], *,
               service: str = "desk", token: str = "token-known") -> tuple[int, Any]:  # noqa: S107
    answer = await client.post(f"/{service}/mcp", json=rpc("tools/call", {
        "name": tool, "arguments": arguments}),
        headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"})
    return answer.status, await answer.json()


def told(status: int, body: Any) -> str:
    if status != 200:
        return str(body["error"]["message"])
    result = body["result"]
    return " ".join(block["text"] for block in result["content"])


async def other_callers_meanwhile(client: TestClient[Any, Any]) -> list[float]:
    """Five calls of the healthy service spread over the fault: how long each took."""
    took = []
    for _ in range(5):
        started = time.monotonic()
        status, body = await call(client, "read_item", {}, service="other")
        assert status == 200 and body["result"]["isError"] is False, body
        took.append(time.monotonic() - started)
        await asyncio.sleep(0.05)
    return took


@pytest.mark.parametrize("row", ROWS, ids=[row.fault for row in ROWS])
async def test_each_fault_is_a_clear_bounded_answer_and_others_stay_healthy(
        aiohttp_client: AiohttpClient, tmp_path: Path, healthy: FaultServer, row: Row) -> None:
    async with running(FaultServer()) as upstream:
        upstream.plan("/introspect", ACTIVE)
        specs = desk_specs(tmp_path, upstream.url, healthy.url,
                           introspection_url=f"{upstream.url}/introspect")
        client = await aiohttp_client(create_app(Settings(
            specs_dir=specs, log_json=True, upstream_timeout_s=1.0, introspection_timeout_s=0.5,
            upstream_max_response_bytes=1_000_000)))
        token = next(FRESH_TOKENS) if row.path == "/introspect" else "token-known"
        arguments: dict[str, Any] = {}
        if row.tool == "write_item":
            arguments = {"text": "once"}
            _, preview = await call(client, row.tool, arguments, token=token)
            arguments["confirmation_token"] = (
                preview["result"]["structuredContent"]["confirmation_token"])
        elif row.path != "/introspect":
            await call(client, "read_other", {}, token=token)  # the token is known from now
        if row.plan is None:
            await upstream.stop()
        else:
            upstream.plan(row.path, row.plan)
        started = time.monotonic()
        faulty = asyncio.create_task(call(client, row.tool, arguments, token=token))
        others = await other_callers_meanwhile(client)
        status, body = await faulty
        took = time.monotonic() - started
    assert status == row.http_status, body
    assert row.expect in told(status, body)
    assert took <= row.within_s, f"{row.fault}: {took:.2f} s"
    assert max(others) < 0.5, others
    if row.retry_after is not None:
        assert body["result"]["_meta"]["retryAfterSeconds"] == row.retry_after


def test_the_operations_guide_has_the_same_table() -> None:
    guide = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    table = guide.split("## When an upstream fails", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and not set(cells[0]) <= {"-"}:
            documented[cells[0]], documented[cells[0] + "@"] = cells[1], cells[2]
    for row in ROWS:
        assert row.fault in documented, row.fault
        assert (row.documented or row.expect) in documented[row.fault], row.fault
        assert f"{row.within_s:g} s" == documented[row.fault + "@"], row.fault
