"""Write limits and single-use confirmations shared through a real Redis, as across replicas."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
import respx
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from structlog.testing import capture_logs

from gateway.upstream.mock_wire import MockWire
from gateway.writes.redis_store import RedisLimits
from tests.support import AiohttpClient, Clock, auth, gateway_app, rpc

WRITER = "rtly_mcp_pat_demowriter_s3cr3t"
FEEDBACK_ID = "5a9d595701c85b37224ab2d0"
FEEDBACK = f"https://app.retently.com/api/v2/feedback/{FEEDBACK_ID}"
TAGS = "https://app.retently.com/api/v2/response/tags"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_redis(port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own on loopback (a free port unless given): its URL and its
    process."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make test installs it with apt-get)")
    port = port or _free_port()
    server = subprocess.Popen(  # noqa: S603 - a fixed binary and arguments, no shell
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail("redis-server exited at startup")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", server
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis() as (url, _):
        yield url


@pytest.fixture
async def limits(redis_url: str) -> AsyncIterator[RedisLimits]:
    cleaner = redis.Redis.from_url(redis_url)
    await cleaner.flushdb()  # a clean database per test
    await cleaner.aclose()
    store = await RedisLimits.connect(redis_url)
    yield store
    await store.close()


async def test_a_bucket_refuses_past_capacity_and_refills_with_time(limits: RedisLimits) -> None:
    assert await limits.take("acct", 2, 2 / 60, 1000.0) == 0
    assert await limits.take("acct", 2, 2 / 60, 1000.0) == 0
    wait = await limits.take("acct", 2, 2 / 60, 1000.0)
    assert 29 < wait <= 30
    assert await limits.take("acct", 2, 2 / 60, 1031.0) == 0


async def test_buckets_are_per_key(limits: RedisLimits) -> None:
    assert await limits.take("a", 1, 1 / 60, 0.0) == 0
    assert await limits.take("a", 1, 1 / 60, 0.0) > 0
    assert await limits.take("b", 1, 1 / 60, 0.0) == 0


async def test_a_claim_holds_once_across_replicas(redis_url: str, limits: RedisLimits) -> None:
    other = await RedisLimits.connect(redis_url)
    try:
        assert await limits.claim_once("nonce-1", 60) is True
        assert await other.claim_once("nonce-1", 60) is False
        assert await other.claim_once("nonce-2", 60) is True
    finally:
        await other.close()


def shared(redis_url: str) -> dict[str, Any]:
    """What replicas share: the Redis of their limits, and the key of their tokens."""
    return {"redis_url": SecretStr(redis_url), "secret_key": SecretStr("shared-by-all-replicas")}


@pytest.fixture
async def replicas(aiohttp_client: AiohttpClient, redis_url: str, limits: RedisLimits,
                   upstream: respx.MockRouter, wire: MockWire
                   ) -> tuple[TestClient[Any, Any], ...]:
    upstream.get(FEEDBACK).mock(return_value=httpx.Response(200, json={
        "data": {"responses": [{"id": FEEDBACK_ID, "feedbackTags": ["vip"]}]}}))
    upstream.post(TAGS, name="write").mock(return_value=httpx.Response(
        200, json={"code": 200, "message": "Success."}))
    first, second = [await aiohttp_client(gateway_app(wire, **shared(redis_url)))
                     for _ in range(2)]
    return first, second


async def _tag(client: TestClient[Any, Any], **extra: Any) -> dict[str, Any]:
    response = await client.post("/retently/mcp", headers=auth(WRITER), json=rpc(
        "tools/call", {"name": "tag_feedback",
                       "arguments": {"id": FEEDBACK_ID, "add": ["churn-risk"], **extra}}))
    result: dict[str, Any] = (await response.json())["result"]
    return result


async def test_a_confirmation_is_single_use_across_replicas(
        replicas: tuple[TestClient[Any, Any], ...], upstream: respx.MockRouter) -> None:
    first, second = replicas
    preview = (await _tag(first))["structuredContent"]
    done = await _tag(second, confirmation_token=preview["confirmation_token"])
    again = await _tag(first, confirmation_token=preview["confirmation_token"])
    assert done["structuredContent"]["status"] == "done"
    assert again["isError"] is True and "already used" in again["content"][0]["text"]
    assert upstream.routes["write"].call_count == 1  # the write reached the upstream once


async def test_the_write_limit_is_shared_by_replicas(
        aiohttp_client: AiohttpClient, redis_url: str, limits: RedisLimits,
        upstream: respx.MockRouter, wire: MockWire) -> None:
    upstream.get(FEEDBACK).mock(return_value=httpx.Response(200, json={
        "data": {"responses": [{"id": FEEDBACK_ID, "feedbackTags": []}]}}))
    upstream.post(TAGS).mock(return_value=httpx.Response(200, json={"code": 200}))
    clock = Clock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    clients = [await aiohttp_client(gateway_app(wire, clock=clock, **shared(redis_url)))
               for _ in range(2)]

    async def write(attempt: int) -> dict[str, Any]:
        client = clients[attempt % 2]  # alternate replicas
        preview = (await _tag(client, add=[f"t{attempt}"]))["structuredContent"]
        return await _tag(client, add=[f"t{attempt}"],
                          confirmation_token=preview["confirmation_token"])

    outcomes = [(await write(attempt))["isError"] for attempt in range(30)]
    refused = await write(30)
    clock.advance(3)  # 30 a minute: a token comes back every 2 seconds
    after = await write(31)
    assert outcomes == [False] * 30
    assert refused["isError"] is True
    assert "retry in 2 seconds" in refused["content"][0]["text"]
    assert after["isError"] is False


async def test_readyz_reports_redis_and_is_not_ready_while_it_is_down(
        aiohttp_client: AiohttpClient, wire: MockWire) -> None:
    with running_redis() as (url, server):
        client = await aiohttp_client(gateway_app(wire, redis_url=SecretStr(url)))
        up = await client.get("/readyz")
        assert up.status == 200
        assert (await up.json())["components"]["redis"] == {"ok": True}
        server.terminate()
        server.wait(timeout=10)
        down = await client.get("/readyz")
        assert down.status == 503
        report = await down.json()
        assert report["components"]["redis"] == {"ok": False}
        assert report["components"]["specs"]["services"]["retently"] == 53
        assert (await client.get("/healthz")).status == 200  # liveness stays cheap and up


async def test_a_redis_outage_at_confirmation_is_told_audited_and_keeps_the_token(
        aiohttp_client: AiohttpClient, upstream: respx.MockRouter, wire: MockWire) -> None:
    upstream.get(FEEDBACK).mock(return_value=httpx.Response(200, json={
        "data": {"responses": [{"id": FEEDBACK_ID, "feedbackTags": []}]}}))
    write = upstream.post(TAGS).mock(return_value=httpx.Response(200, json={"code": 200}))
    with running_redis() as (url, server):
        client = await aiohttp_client(gateway_app(wire, **shared(url)))
        token = (await _tag(client))["structuredContent"]["confirmation_token"]
        server.terminate()
        server.wait(timeout=10)
        with capture_logs() as events:
            refused = await _tag(client, confirmation_token=token)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with running_redis(port):  # the same Redis back: the same token now works
            done = await _tag(client, confirmation_token=token)

    text = refused["content"][0]["text"]
    assert refused["isError"] is True and "Internal error" not in text
    assert text.startswith("Not executed, nothing was changed") and "still good" in text
    assert [(e["outcome"], e["reason"]) for e in events if e["event"] == "audit"] == [
        ("refused", "store_unavailable")]
    logged = [e for e in events if e["event"] == "limit_store_unavailable"]
    assert logged and "ConnectionError" in logged[0]["error"]
    assert done["structuredContent"]["status"] == "done"
    assert write.call_count == 1
