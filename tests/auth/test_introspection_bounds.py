"""What unknown tokens may cost the authorization server: concurrent first calls with one token
share one introspection, and introspections of tokens not yet known are bounded.

Driven through `TokenResolver` with an injected clock and a fake introspection that answers
only when a test releases it (an asyncio.Event), so nothing here sleeps; and once through the
endpoint, for what a flooding client is answered.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import respx

from gateway.auth.principal import Principal
from gateway.auth.resolver import IntrospectionBounds, TokenResolver
from gateway.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    AuthError,
    AuthUnavailable,
    IntrospectionThrottled,
)
from gateway.server.app import create_app
from gateway.settings import SHIPPED_SPECS, Settings
from gateway.spec.compiled import CompiledService
from gateway.spec.loader import load_tree
from gateway.upstream.mock_wire import MockWire
from tests.support import RETENTLY_ADMIN, AiohttpClient, auth, rpc

T = TypeVar("T")
NOW = 1_000.0
VALID = "rtly_mcp_pat_valid_s3cret"
REVOKED = "rtly_mcp_pat_revoked_s3cret"
HERE = "192.0.2.10"
BOUNDS = IntrospectionBounds(per_address=10, per_process=100, addresses=1_000)


@pytest.fixture(scope="module")
def service() -> CompiledService:
    found = load_tree(SHIPPED_SPECS, {}).get("retently")
    assert found is not None
    return found


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Authority:
    """The fake introspection: every question is recorded; while `held`, answers wait for
    `release`; `down` makes it fail the way the real client does."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.held = False
        self.release = asyncio.Event()
        self.down = False

    async def __call__(self, _url: str, token: str) -> Mapping[str, Any]:
        self.asked.append(token)
        if self.held:
            await self.release.wait()
        if self.down:
            raise AuthUnavailable("The authorization server could not be reached")
        if token == VALID:
            return {"active": True, "scope": "feedback:read", "sub": "valid",
                    "exp": NOW + 86_400, "aud": "urn:mcp-gateway:retently"}
        return {"active": False}


async def crowd(count: int, call: Callable[[], Awaitable[T]]) -> list[asyncio.Task[T]]:
    """`count` concurrent calls, returned once every one of them is waiting inside `call`."""
    arrived = 0
    everyone = asyncio.Event()

    async def one() -> T:
        nonlocal arrived
        arrived += 1
        if arrived == count:
            everyone.set()
        return await call()  # runs up to its first wait before the next task starts

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    async with asyncio.timeout(5):
        await everyone.wait()
    return tasks


async def settle(tasks: list[asyncio.Task[T]]) -> list[T | BaseException]:
    async with asyncio.timeout(5):  # never a hang
        return await asyncio.gather(*tasks, return_exceptions=True)


# --- single flight ----------------------------------------------------------------------------


async def test_fifty_concurrent_first_calls_with_one_token_cause_one_introspection(
        service: CompiledService) -> None:
    authority = Authority()
    authority.held = True
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    tasks = await crowd(50, lambda: resolver.resolve(service, VALID, address=HERE))
    authority.release.set()
    answers = await settle(tasks)
    assert authority.asked == [VALID]
    assert all(isinstance(a, Principal) and a.subject == "valid" for a in answers)


async def test_a_slow_introspection_answers_every_waiter_once_it_arrives(
        service: CompiledService) -> None:
    authority = Authority()
    authority.held = True
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    tasks = await crowd(20, lambda: resolver.resolve(service, VALID, address=HERE))
    assert not any(task.done() for task in tasks)  # nobody is answered before the server
    authority.release.set()
    answers = await settle(tasks)
    assert [a.subject if isinstance(a, Principal) else a for a in answers] == ["valid"] * 20
    assert len(authority.asked) == 1


async def test_a_shared_refusal_reaches_every_waiter_and_is_remembered(
        service: CompiledService) -> None:
    authority = Authority()
    authority.held = True
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    tasks = await crowd(10, lambda: resolver.resolve(service, REVOKED, address=HERE))
    authority.release.set()
    answers = await settle(tasks)
    assert all(isinstance(a, AuthError) and a.error == "invalid_token" for a in answers)
    with pytest.raises(AuthError):
        await resolver.resolve(service, REVOKED, address=HERE)
    assert authority.asked == [REVOKED]


async def test_a_shared_failure_reaches_every_waiter_and_the_next_call_asks_again(
        service: CompiledService) -> None:
    authority = Authority()
    authority.held = True
    authority.down = True
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    tasks = await crowd(10, lambda: resolver.resolve(service, VALID, address=HERE))
    authority.release.set()
    answers = await settle(tasks)
    assert all(isinstance(a, AuthUnavailable) for a in answers)
    assert len(authority.asked) == 1
    authority.down = False
    principal = await resolver.resolve(service, VALID, address=HERE)
    assert principal.subject == "valid"
    assert len(authority.asked) == 2


async def test_a_cancelled_waiter_does_not_cancel_the_introspection_of_the_others(
        service: CompiledService) -> None:
    authority = Authority()
    authority.held = True
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    tasks = await crowd(5, lambda: resolver.resolve(service, VALID, address=HERE))
    tasks[0].cancel()
    async with asyncio.timeout(5):
        await asyncio.wait([tasks[0]])
    authority.release.set()
    answers = await settle(tasks[1:])
    assert tasks[0].cancelled()
    assert [a.subject if isinstance(a, Principal) else a for a in answers] == ["valid"] * 4
    assert authority.asked == [VALID]



async def test_a_remembered_refusal_does_not_grow_with_each_request(
        service: CompiledService) -> None:
    resolver = TokenResolver(Authority(), Clock(), BOUNDS)
    depths = []
    for _ in range(100):
        try:
            await resolver.resolve(service, REVOKED, address=HERE)
        except AuthError as refusal:  # its traceback holds the frames (and requests) it crossed
            depths.append(len(traceback.extract_tb(refusal.__traceback__)))
    assert len(depths) == 100
    assert depths[-1] == depths[1]

# --- bounds on introspections of unknown tokens -------------------------------------------------


def unknown(number: int) -> str:
    return f"rtly_mcp_pat_guess{number}_x"


def many(number: int) -> str:
    return f"10.{number // 65_536}.{number // 256 % 256}.{number % 256}"


async def flood(resolver: TokenResolver, service: CompiledService, count: int,
                address: Callable[[int], str]) -> list[IntrospectionThrottled]:
    """`count` unknown tokens, one after the other; the throttled refusals they met."""
    throttled = []
    for number in range(count):
        try:
            await resolver.resolve(service, unknown(number), address=address(number))
        except IntrospectionThrottled as refusal:
            throttled.append(refusal)
        except AuthError:
            pass  # asked, and refused: the token is unknown to the authorization server
    return throttled


async def test_a_thousand_unknown_tokens_from_one_address_cause_at_most_its_bound(
        service: CompiledService) -> None:
    authority = Authority()
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    throttled = await flood(resolver, service, 1_000, lambda _: HERE)
    assert len(authority.asked) == BOUNDS.per_address
    assert len(throttled) == 1_000 - BOUNDS.per_address
    assert {refusal.bound for refusal in throttled} == {"address"}
    assert min(refusal.retry_after_s for refusal in throttled) > 0


async def test_a_thousand_unknown_tokens_from_many_addresses_cause_at_most_the_process_bound(
        service: CompiledService) -> None:
    authority = Authority()
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    throttled = await flood(resolver, service, 1_000, many)
    assert len(authority.asked) == BOUNDS.per_process
    assert len(throttled) == 1_000 - BOUNDS.per_process
    assert {refusal.bound for refusal in throttled} == {"process"}


async def test_a_cached_valid_token_keeps_working_during_a_flood(
        service: CompiledService) -> None:
    authority = Authority()
    clock = Clock()
    resolver = TokenResolver(authority, clock, BOUNDS)
    await resolver.resolve(service, VALID, address=HERE)
    for round_ in range(4):
        await flood(resolver, service, 300, lambda n: HERE if n % 2 else many(n))
        principal = await resolver.resolve(service, VALID, address=HERE)
        assert principal.subject == "valid", round_
        clock.advance(service.spec.auth.cache_ttl_s)  # its cache entry expires meanwhile
    assert authority.asked.count(VALID) == 4  # asked again once expired, never refused


async def test_a_client_over_its_bound_is_let_through_after_retry_after(
        service: CompiledService) -> None:
    authority = Authority()
    clock = Clock()
    resolver = TokenResolver(authority, clock, BOUNDS)
    await flood(resolver, service, BOUNDS.per_address, lambda _: HERE)
    with pytest.raises(IntrospectionThrottled) as caught:
        await resolver.resolve(service, VALID, address=HERE)
    assert caught.value.bound == "address"
    assert caught.value.retry_after_s == pytest.approx(60 / BOUNDS.per_address)
    assert VALID not in authority.asked
    clock.advance(caught.value.retry_after_s)
    principal = await resolver.resolve(service, VALID, address=HERE)
    assert principal.subject == "valid"


async def test_the_process_bound_says_when_to_retry(service: CompiledService) -> None:
    resolver = TokenResolver(Authority(), Clock(), BOUNDS)
    throttled = await flood(resolver, service, BOUNDS.per_process + 1, many)
    assert [refusal.bound for refusal in throttled] == ["process"]
    assert throttled[0].retry_after_s == pytest.approx(60 / BOUNDS.per_process)


async def test_one_address_over_its_bound_leaves_another_its_own(
        service: CompiledService) -> None:
    authority = Authority()
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    await flood(resolver, service, 100, lambda _: HERE)
    principal = await resolver.resolve(service, VALID, address="198.51.100.7")
    assert principal.subject == "valid"


async def test_a_remembered_refusal_spends_none_of_the_bound(service: CompiledService) -> None:
    authority = Authority()
    resolver = TokenResolver(authority, Clock(), IntrospectionBounds(2, 100, 1_000))
    for _ in range(50):
        with pytest.raises(AuthError) as caught:
            await resolver.resolve(service, REVOKED, address=HERE)
        assert not isinstance(caught.value, IntrospectionThrottled)
    assert (await resolver.resolve(service, VALID, address=HERE)).subject == "valid"
    assert authority.asked == [REVOKED, VALID]


async def test_waiters_on_one_introspection_spend_the_bound_once(
        service: CompiledService) -> None:
    authority = Authority()
    authority.held = True
    resolver = TokenResolver(authority, Clock(), IntrospectionBounds(1, 100, 1_000))
    tasks = await crowd(50, lambda: resolver.resolve(service, VALID, address=HERE))
    authority.release.set()
    answers = await settle(tasks)
    assert all(isinstance(a, Principal) for a in answers)
    with pytest.raises(IntrospectionThrottled):
        await resolver.resolve(service, unknown(0), address=HERE)


async def test_a_throttled_refusal_is_no_verdict_on_the_token(
        service: CompiledService) -> None:
    resolver = TokenResolver(Authority(), Clock(), IntrospectionBounds(1, 100, 1_000))
    await flood(resolver, service, 1, lambda _: HERE)
    with pytest.raises(AuthUnavailable):  # the endpoint lets anonymous methods through on this
        await resolver.resolve(service, VALID, address=HERE)


async def test_an_unknown_address_is_bounded_too(service: CompiledService) -> None:
    authority = Authority()
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    for number in range(50):
        with pytest.raises((AuthError, IntrospectionThrottled)):
            await resolver.resolve(service, unknown(number), address=None)
    assert len(authority.asked) == BOUNDS.per_address



async def test_the_addresses_of_one_ipv6_network_share_one_budget(
        service: CompiledService) -> None:
    authority = Authority()
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    throttled = await flood(resolver, service, 100, lambda n: f"2001:db8:1:2::{n:x}")
    assert len(authority.asked) == BOUNDS.per_address  # one /64: every address is its holder's
    assert {refusal.bound for refusal in throttled} == {"address"}
    principal = await resolver.resolve(service, VALID, address="2001:db8:1:3::1")
    assert principal.subject == "valid"  # the next /64 is someone else


async def test_an_ipv4_address_seen_over_ipv6_is_its_own_client(
        service: CompiledService) -> None:
    authority = Authority()
    resolver = TokenResolver(authority, Clock(), BOUNDS)
    await flood(resolver, service, 100, lambda n: f"::ffff:192.0.2.{n}")
    assert len(authority.asked) == 100

async def test_the_address_table_stays_bounded(service: CompiledService) -> None:
    authority = Authority()
    resolver = TokenResolver(authority, Clock(), IntrospectionBounds(10, 10_000, 100))
    await flood(resolver, service, 1_000, many)
    assert len(authority.asked) == 1_000
    assert len(resolver._budget._addresses) <= 100


@pytest.mark.parametrize("bounds", [(0, 10, 10), (10, 0, 10), (10, 10, 0)])
def test_bounds_below_one_are_refused_when_built(bounds: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        IntrospectionBounds(*bounds)


# --- what a flooding client is answered ---------------------------------------------------------


class WallClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(("per_address", "per_process", "status", "code"), [
    (4, 1_000, 429, INVALID_REQUEST),
    (1_000, 4, 503, INTERNAL_ERROR),
], ids=["its address", "the process"])
async def test_a_flooding_client_is_refused_with_retry_after_and_nothing_is_asked(
        aiohttp_client: AiohttpClient, upstream: respx.MockRouter, wire: MockWire,
        per_address: int, per_process: int, status: int, code: int) -> None:
    clock = WallClock()
    client = await aiohttp_client(create_app(Settings(
        specs_dir=SHIPPED_SPECS, log_json=True,
        introspections_per_address_per_minute=per_address,
        introspections_per_minute=per_process), clock=clock, wire=wire))

    async def ask(token: str, message: dict[str, Any] | None = None) -> Any:
        async with asyncio.timeout(5):
            return await client.post("/retently/mcp", headers=auth(token),
                                      json=message or rpc("tools/list"))

    assert (await ask(RETENTLY_ADMIN)).status == 200  # known before the flood: 1 of the 4
    answers = [await ask(unknown(number)) for number in range(10)]
    assert [answer.status for answer in answers] == [401] * 3 + [status] * 7
    refused = answers[-1]
    body = await refused.json()
    assert refused.headers["Retry-After"] == "15"  # a bucket of 4 a minute: one every 15 s
    assert "WWW-Authenticate" not in refused.headers  # no verdict on the token: keep it
    assert (body["id"], body["error"]["code"]) == (1, code)
    assert upstream.calls.call_count == 4
    assert (await ask(RETENTLY_ADMIN)).status == 200
    initialize = rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                    "clientInfo": {"name": "t", "version": "1"}})
    assert (await ask(unknown(99), initialize)).status == 200
    clock.now += timedelta(seconds=15)
    assert (await ask(unknown(10))).status == 401  # asked again once the bucket has room
    assert upstream.calls.call_count == 5
