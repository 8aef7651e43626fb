"""token -> Principal per the service's resolver, cached by a hash of the token (never past its
expiry, refusals briefly), one introspection at a time per token. Introspection is an HTTP call,
so it comes in as an injected callable.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.auth.principal import (
    Principal,
    check_audience,
    check_format,
    passthrough_principal,
    principal_from_claims,
)
from gateway.errors import AuthError
from gateway.spec.compiled import CompiledService

NEGATIVE_CACHE_S: Final = 30.0
"""How long a refused token is remembered, so a flood of bad tokens does not reach the AS."""


Introspect = Callable[[str, str], Awaitable[Mapping[str, Any]]]
"""(introspection URL, token) -> the RFC 7662 answer. Raises AuthUnavailable."""


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal | None
    refusal: AuthError | None
    until: float


class TokenResolver:
    """token -> Principal per the service's resolver, with a bounded cache keyed by token hash."""

    def __init__(self, introspect: Introspect, clock: Callable[[], float], *,
                 max_entries: int = 10_000) -> None:
        self._introspect = introspect
        self._clock = clock
        self._max_entries = max_entries
        # A plain dict: this lookup is on every request, and cachetools' TLRUCache cost more
        # than the rest of the token check. Expiry is checked on read, the bound on write.
        self._cache: dict[tuple[str, str], _Cached] = {}
        # The introspection under way per token hash: concurrent first calls with one token
        # wait for it rather than each asking the authorization server.
        self._asking: dict[tuple[str, str], asyncio.Task[_Cached]] = {}

    async def resolve(self, service: CompiledService, token: str, resource: str = "") -> Principal:
        """Raises:
            AuthError: the token is malformed for the service, inactive, expired or foreign.
            AuthUnavailable: the authorization server could not be asked.
        """
        principal = await self._resolve(service, token)
        check_audience(service, principal, resource)
        return principal

    async def _resolve(self, service: CompiledService, token: str) -> Principal:
        check_format(service, token)
        spec = service.spec.auth
        if spec.resolver == "passthrough" or spec.introspection_url is None:
            return passthrough_principal(service, token)
        key = (service.name, hashlib.sha256(token.encode()).hexdigest())
        cached = self._cache.get(key)
        if cached is not None and cached.until > self._clock():
            return _answer(cached)
        asking = self._asking.get(key)
        if asking is None:
            asking = asyncio.create_task(self._ask(key, service, token, spec.introspection_url))
            if not asking.done():
                self._asking[key] = asking
        # Shielded: a waiter that gives up (its client went away) leaves the answer to the others.
        return _answer(await asyncio.shield(asking))

    async def _ask(self, key: tuple[str, str], service: CompiledService, token: str,
                   url: str) -> _Cached:
        """Introspect once and remember the answer; a failure (AuthUnavailable) is not cached."""
        try:
            claims = await self._introspect(url, token)
        finally:
            self._asking.pop(key, None)
        now = self._clock()
        try:
            principal = principal_from_claims(service, token, claims, now)
        except AuthError as refusal:
            entry = _Cached(None, refusal, now + NEGATIVE_CACHE_S)
        else:
            until = now + service.spec.auth.cache_ttl_s
            if principal.expires_at is not None:
                until = min(until, principal.expires_at)
            entry = _Cached(principal, None, until)
        self._remember(key, entry)
        return entry

    def _remember(self, key: tuple[str, str], entry: _Cached) -> None:
        """Store an answer; when full, forget the expired ones, then the oldest tenth."""
        cache = self._cache
        cache.pop(key, None)
        if len(cache) >= self._max_entries:
            now = self._clock()
            for stale in [k for k, v in cache.items() if v.until <= now]:
                del cache[stale]
            if len(cache) >= self._max_entries * 9 // 10:
                for oldest in list(itertools.islice(cache, max(1, self._max_entries // 10))):
                    del cache[oldest]
        cache[key] = entry


def _answer(entry: _Cached) -> Principal:
    """Raises:
        AuthError: the remembered refusal.
    """
    if entry.principal is not None:
        return entry.principal
    assert entry.refusal is not None  # noqa: S101 - an entry holds one or the other
    raise entry.refusal
