"""What unknown tokens may cost the authorization server: concurrent first calls with one token
share one introspection, and introspections of tokens not yet known are bounded.

Driven through `TokenResolver` with an injected clock and a fake introspection that answers
only when a test releases it (an asyncio.Event), so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import pytest

from gateway.auth.principal import Principal
from gateway.auth.resolver import TokenResolver
from gateway.errors import AuthError, AuthUnavailable
from gateway.settings import SHIPPED_SPECS
from gateway.spec.compiled import CompiledService
from gateway.spec.loader import load_tree

T = TypeVar("T")
NOW = 1_000.0
VALID = "rtly_mcp_pat_valid_s3cret"
REVOKED = "rtly_mcp_pat_revoked_s3cret"


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
                    "exp": NOW + 86_400}
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
    resolver = TokenResolver(authority, Clock())
    tasks = await crowd(50, lambda: resolver.resolve(service, VALID))
    authority.release.set()
    answers = await settle(tasks)
    assert authority.asked == [VALID]
    assert all(isinstance(a, Principal) and a.subject == "valid" for a in answers)


async def test_a_slow_introspection_answers_every_waiter_once_it_arrives(
        service: CompiledService) -> None:
    authority = Authority()
    authority.held = True
    resolver = TokenResolver(authority, Clock())
    tasks = await crowd(20, lambda: resolver.resolve(service, VALID))
    assert not any(task.done() for task in tasks)  # nobody is answered before the server
    authority.release.set()
    answers = await settle(tasks)
    assert [a.subject if isinstance(a, Principal) else a for a in answers] == ["valid"] * 20
    assert len(authority.asked) == 1


async def test_a_shared_refusal_reaches_every_waiter_and_is_remembered(
        service: CompiledService) -> None:
    authority = Authority()
    authority.held = True
    resolver = TokenResolver(authority, Clock())
    tasks = await crowd(10, lambda: resolver.resolve(service, REVOKED))
    authority.release.set()
    answers = await settle(tasks)
    assert all(isinstance(a, AuthError) and a.error == "invalid_token" for a in answers)
    with pytest.raises(AuthError):
        await resolver.resolve(service, REVOKED)
    assert authority.asked == [REVOKED]


async def test_a_shared_failure_reaches_every_waiter_and_the_next_call_asks_again(
        service: CompiledService) -> None:
    authority = Authority()
    authority.held = True
    authority.down = True
    resolver = TokenResolver(authority, Clock())
    tasks = await crowd(10, lambda: resolver.resolve(service, VALID))
    authority.release.set()
    answers = await settle(tasks)
    assert all(isinstance(a, AuthUnavailable) for a in answers)
    assert len(authority.asked) == 1
    authority.down = False
    principal = await resolver.resolve(service, VALID)
    assert principal.subject == "valid"
    assert len(authority.asked) == 2


async def test_a_cancelled_waiter_does_not_cancel_the_introspection_of_the_others(
        service: CompiledService) -> None:
    authority = Authority()
    authority.held = True
    resolver = TokenResolver(authority, Clock())
    tasks = await crowd(5, lambda: resolver.resolve(service, VALID))
    tasks[0].cancel()
    async with asyncio.timeout(5):
        await asyncio.wait([tasks[0]])
    authority.release.set()
    answers = await settle(tasks[1:])
    assert tasks[0].cancelled()
    assert [a.subject if isinstance(a, Principal) else a for a in answers] == ["valid"] * 4
    assert authority.asked == [VALID]
