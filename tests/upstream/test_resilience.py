"""Upstream calls degrade gracefully: reads are retried when the upstream says "not now", writes
never are, a Retry-After reaches the client, a failing upstream trips a breaker that lets one
probe through, and one hung endpoint holds only its bounded share. Against a fault-injecting
upstream on loopback, through the gateway's HTTP endpoint with the real aiohttp client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.server.app import create_app
from gateway.settings import Settings
from gateway.upstream.breakers import Breaker, State
from gateway.upstream.retries import RetryPolicy, retry_after_s
from tests.faults import (
    FaultServer,
    desk_specs,
    hang,
    json_answer,
    reset,
    running,
    slow,
)
from tests.support import MCP_HEADERS, AiohttpClient, rpc

Call = Callable[..., Coroutine[Any, Any, dict[str, Any]]]


@pytest.fixture
async def upstream() -> AsyncIterator[FaultServer]:
    async with running(FaultServer()) as server:
        yield server


@pytest.fixture
async def healthy() -> AsyncIterator[FaultServer]:
    async with running(FaultServer()) as server:
        yield server


@pytest.fixture
def open_desk(aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer,
              healthy: FaultServer) -> Callable[..., Awaitable[Call]]:
    """The gateway in front of `upstream` (service desk) and `healthy` (service other), with
    these settings; gives a function that calls a tool and returns its result."""
    async def open_with(**settings: Any) -> Call:
        specs = desk_specs(tmp_path / "specs", upstream.url, healthy.url)
        client = await aiohttp_client(create_app(Settings(
            specs_dir=specs, log_json=True, **{"upstream_timeout_s": 2.0, **settings})))
        return lambda *args, **kwargs: call(client, *args, **kwargs)

    return open_with


async def call(client: TestClient[Any, Any], tool: str, arguments: dict[str, Any] | None = None,
               *, service: str = "desk", token: str = "alice") -> dict[str, Any]:  # noqa: S107
    answer = await client.post(f"/{service}/mcp", json=rpc("tools/call", {
        "name": tool, "arguments": arguments or {}}),
        headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"})
    assert answer.status == 200, await answer.text()
    result: dict[str, Any] = (await answer.json())["result"]
    return result


async def confirmed(desk: Call, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    preview = await desk(tool, arguments)
    token = preview["structuredContent"]["confirmation_token"]
    return await desk(tool, {**arguments, "confirmation_token": token})


def text(result: dict[str, Any]) -> str:
    return " ".join(block["text"] for block in result["content"])


# --- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_a_read_answered_not_now_is_sent_again_and_succeeds(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer, status: int) -> None:
    upstream.plan("/item", json_answer({"error": "busy"}, status), json_answer({"id": 7}))
    desk = await open_desk()
    result = await desk("read_item")
    assert result["isError"] is False, text(result)
    assert result["structuredContent"] == {"id": 7}
    assert upstream.count("/item") == 2


async def test_a_read_over_a_refused_connection_is_retried_until_its_attempts_are_spent(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    upstream.plan("/item", reset)
    desk = await open_desk(upstream_retry_attempts=3)
    started = time.monotonic()
    result = await desk("read_item")
    assert result["isError"] is True
    assert "exchange failed" in text(result)
    assert upstream.count("/item") == 3
    assert time.monotonic() - started < 1.5  # backoff stays within a fraction of the deadline


async def test_a_read_declared_idempotent_is_retried_like_a_get(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    upstream.plan("/search", json_answer({}, 503), json_answer({"hits": 1}))
    desk = await open_desk()
    result = await desk("search_items")
    assert result["structuredContent"] == {"hits": 1}
    assert upstream.count("/search") == 2


async def test_a_read_waits_the_retry_after_it_is_given_when_the_deadline_allows(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    upstream.plan("/item", json_answer({}, 503, {"Retry-After": "1"}), json_answer({"id": 1}))
    desk = await open_desk(upstream_timeout_s=3.0)
    started = time.monotonic()
    result = await desk("read_item")
    assert result["isError"] is False
    assert time.monotonic() - started >= 0.95


@pytest.mark.parametrize("status", [429, 503, 502])
async def test_a_write_is_sent_once_whatever_the_upstream_answers(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer, status: int) -> None:
    upstream.plan("POST /item", json_answer({"error": "later"}, status, {"Retry-After": "1"}))
    desk = await open_desk()
    result = await confirmed(desk, "write_item", {"text": "once"})
    assert result["isError"] is True
    assert f"HTTP {status}" in text(result)
    assert upstream.count("/item") == 1


async def test_a_put_is_not_sent_again_when_its_kept_alive_connection_turns_out_closed(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    """aiohttp by itself re-sends a PUT or DELETE that meets a closed kept-alive connection; a
    write must reach the upstream once, and its lost answer make the outcome unknown."""
    upstream.plan("PUT /item", reset, json_answer())
    desk = await open_desk()
    preview = await desk("put_item", {"text": "v2"})
    await desk("read_item")  # leaves a kept-alive connection for the write to reuse
    result = await desk("put_item", {"text": "v2", "confirmation_token":
                                     preview["structuredContent"]["confirmation_token"]})
    assert [r.method for r in upstream.received].count("PUT") == 1
    assert text(result).startswith("Outcome unknown")


# --- Retry-After --------------------------------------------------------------------------


async def test_a_long_retry_after_is_told_to_the_client_in_the_text_and_in_meta(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    upstream.plan("/item", json_answer({"message": "Slow down"}, 429, {"Retry-After": "60"}))
    desk = await open_desk()
    result = await desk("read_item")
    assert result["isError"] is True
    assert "retry in 60 seconds" in text(result)
    assert result["_meta"]["retryAfterSeconds"] == 60
    assert upstream.count("/item") == 1  # 60 s is longer than worth waiting inside a call


async def test_a_retry_after_given_as_an_http_date_is_honoured(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    upstream.plan("/item", json_answer({}, 503, {"Retry-After": formatdate(
        time.time() + 120, usegmt=True)}))
    desk = await open_desk()
    result = await desk("read_item")
    assert 118 <= result["_meta"]["retryAfterSeconds"] <= 121
    assert "retry in 1" in text(result)


def test_retry_after_reads_seconds_and_http_dates_and_ignores_the_rest() -> None:
    now = 1_800_000_000.0
    assert retry_after_s("30", now) == 30
    assert retry_after_s(" 2.5 ", now) == 2.5
    assert retry_after_s(formatdate(now + 90, usegmt=True), now) == 90
    assert retry_after_s(formatdate(now - 90, usegmt=True), now) == 0
    assert retry_after_s("soon", now) is None
    assert retry_after_s("-5", now) == 0
    assert retry_after_s(None, now) is None


def test_backoff_is_jittered_below_a_growing_bound() -> None:
    policy = RetryPolicy(base_s=0.1, cap_s=0.3)
    assert policy.backoff_s(1, lambda: 1.0) == pytest.approx(0.1)
    assert policy.backoff_s(2, lambda: 1.0) == pytest.approx(0.2)
    assert policy.backoff_s(5, lambda: 1.0) == pytest.approx(0.3)
    assert policy.backoff_s(2, lambda: 0.5) == pytest.approx(0.1)


# --- circuit breakers ----------------------------------------------------------------------


async def test_a_429_storm_reaches_the_upstream_a_handful_of_times_not_100(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    upstream.plan("/item", slow(0.05, json_answer({"message": "Too many"}, 429,
                                                   {"Retry-After": "60"})))
    desk = await open_desk()
    gate = asyncio.Semaphore(10)

    async def one() -> dict[str, Any]:
        async with gate:
            return await desk("read_item")

    results = await asyncio.gather(*(one() for _ in range(100)))
    assert all(r["isError"] for r in results)
    assert all(50 <= r["_meta"]["retryAfterSeconds"] <= 60 for r in results)
    assert upstream.count("/item") <= 10


async def test_one_credentials_429_does_not_hold_back_another_credential(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    upstream.plan("/item", json_answer({}, 429, {"Retry-After": "60"}), json_answer({"id": 1}))
    desk = await open_desk()
    assert (await desk("read_item", token="alice"))["isError"] is True
    assert (await desk("read_item", token="bob"))["isError"] is False
    held = await desk("read_item", token="alice")
    assert "rate-limited this credential" in text(held)
    assert upstream.count("/item") == 2


async def test_a_failing_upstream_trips_the_breaker_which_lets_one_probe_through(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer,
        healthy: FaultServer) -> None:
    upstream.plan("/item", json_answer({}, 500))
    desk = await open_desk(breaker_failures=3, breaker_open_s=0.3)
    for _ in range(3):
        assert "HTTP 500" in text(await desk("read_item"))
    refused = await desk("read_item")
    assert "holds its requests back" in text(refused)
    assert upstream.count("/item") == 3
    assert (await desk("read_item", service="other"))["isError"] is False  # its own breaker

    await asyncio.sleep(0.35)
    upstream.plan("/item", slow(0.2, json_answer({"id": 1})))
    results = await asyncio.gather(*(desk("read_item") for _ in range(5)))
    assert upstream.count("/item") == 4  # one probe
    assert sum(not r["isError"] for r in results) == 1
    assert (await desk("read_item"))["isError"] is False  # closed again


def state_of(breaker: Breaker) -> State:
    return breaker.state


def test_a_breaker_half_open_probe_that_fails_opens_it_again() -> None:
    breaker = Breaker(threshold=2, open_s=10)
    breaker.failed(0)
    assert breaker.admit(0) is None
    breaker.failed(1)
    assert breaker.admit(5) == pytest.approx(6)
    assert breaker.admit(11) is None and state_of(breaker) is State.PROBING
    assert breaker.admit(11) == pytest.approx(1.0)  # only one probe
    breaker.failed(12)
    assert state_of(breaker) is State.OPEN and breaker.admit(13) == pytest.approx(9)
    assert breaker.admit(22) is None and state_of(breaker) is State.PROBING
    breaker.settled_without_answer()
    assert breaker.admit(22) is None  # a probe that told nothing lets the next one try


# --- bulkheads -----------------------------------------------------------------------------


async def test_one_hung_endpoint_holds_its_tools_share_and_the_rest_is_told_busy(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    upstream.plan("/item", hang)
    desk = await open_desk(upstream_timeout_s=3.0, upstream_queue_wait_s=0.2)
    hung = [asyncio.create_task(desk("read_item")) for _ in range(4)]  # max_in_flight: 4
    await asyncio.sleep(0.2)
    started = time.monotonic()
    busy = await asyncio.gather(*(desk("read_item") for _ in range(6)))
    assert time.monotonic() - started < 1.0
    assert all("gateway is busy" in text(r) for r in busy)
    assert all("did not answer" not in text(r) for r in busy)
    assert all(r["_meta"]["retryAfterSeconds"] == 1 for r in busy)
    assert upstream.count("/item") == 4  # the busy ones were never sent
    assert (await desk("read_other"))["isError"] is False  # same service, another tool
    assert (await desk("read_item", service="other"))["isError"] is False
    for task in hung:
        task.cancel()


async def test_a_full_service_pool_is_busy_for_its_tools_and_not_for_other_services(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    upstream.plan("/other", hang)
    desk = await open_desk(upstream_max_connections=3, upstream_queue_wait_s=0.2)
    hung = [asyncio.create_task(desk("read_other")) for _ in range(3)]
    await asyncio.sleep(0.2)
    result = await desk("read_item")
    assert "all 3 connections to the desk upstream are in use" in text(result)
    assert (await desk("read_item", service="other"))["isError"] is False
    # Each refusal gave back the tool's slot it held while it waited for the service's: more
    # refusals, one after another, than the tool has slots (4), each refused for the pool (a
    # slot kept would make the fifth refused for the tool's share); then the tool is served
    # again once the pool frees.
    for _ in range(5):
        refused = await desk("read_item")
        assert "all 3 connections to the desk upstream are in use" in text(refused)
    waiting = [asyncio.create_task(desk("read_item")) for _ in range(5)]
    await asyncio.sleep(0.05)
    for task in [*hung, *waiting]:  # ...and so did the calls cancelled while they waited
        task.cancel()
    await asyncio.gather(*hung, *waiting, return_exceptions=True)
    assert (await desk("read_item"))["isError"] is False


async def test_a_write_refused_as_busy_was_not_sent_and_keeps_its_token(
        open_desk: Callable[..., Awaitable[Call]], upstream: FaultServer) -> None:
    upstream.plan("/other", hang)
    desk = await open_desk(upstream_max_connections=2, upstream_queue_wait_s=0.2)
    preview = await desk("write_item", {"text": "later"})
    hung = [asyncio.create_task(desk("read_other")) for _ in range(2)]
    await asyncio.sleep(0.2)
    token = preview["structuredContent"]["confirmation_token"]
    result = await desk("write_item", {"text": "later", "confirmation_token": token})
    assert text(result).startswith("Not executed, nothing was changed")
    assert "token is still good" in text(result)
    for task in hung:
        task.cancel()
    await asyncio.gather(*hung, return_exceptions=True)
    again = await desk("write_item", {"text": "later", "confirmation_token": token})
    assert again["structuredContent"]["status"] == "done"
    assert upstream.count("/item") == 1
