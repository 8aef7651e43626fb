"""token -> Principal per the service's resolver, cached by a hash of the token (never past its
expiry, refusals briefly), one introspection at a time per token. Introspection is an HTTP call,
so it comes in as an injected callable.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import ipaddress
import itertools
import math
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

from gateway.auth.principal import (
    Principal,
    check_audience,
    check_format,
    passthrough_principal,
    principal_from_claims,
)
from gateway.errors import AuthError, IntrospectionThrottled
from gateway.spec.compiled import CompiledService
from gateway.telemetry.metrics import INTROSPECTIONS, child
from gateway.writes.limits import refill

NEGATIVE_CACHE_S: Final = 30.0
"""How long a refused token is remembered, so a flood of bad tokens does not reach the AS."""


Introspect = Callable[[str, str], Awaitable[Mapping[str, Any]]]
"""(introspection URL, token) -> the RFC 7662 answer. Raises AuthUnavailable."""


@dataclass(frozen=True, slots=True)
class IntrospectionBounds:
    """Introspections of tokens not yet known, per minute (and in one burst): by one client
    address, and by the whole process; and how many addresses are remembered."""

    per_address: int
    per_process: int
    addresses: int

    def __post_init__(self) -> None:
        if min(self.per_address, self.per_process, self.addresses) < 1:
            raise ValueError(f"introspection bounds must be at least 1: {self}")


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal | None
    refusal: AuthError | None
    until: float


class _Verdict(NamedTuple):
    principal: Principal
    until: float
    introspected: bool
    """Counted as an introspection cache hit when reused."""


class TokenResolver:
    """token -> Principal per the service's resolver, with a bounded cache keyed by token hash."""

    def __init__(self, introspect: Introspect, clock: Callable[[], float],
                 bounds: IntrospectionBounds, *, max_entries: int = 10_000) -> None:
        self._introspect = introspect
        self._clock = clock
        self._max_entries = max_entries
        # A plain dict: this lookup is on every request, and cachetools' TLRUCache cost more
        # than the rest of the token check. Expiry is checked on read, the bound on write.
        self._cache: dict[tuple[str, str], _Cached] = {}
        # The introspection under way per token hash: concurrent first calls with one token
        # wait for it rather than each asking the authorization server.
        self._asking: dict[tuple[str, str], asyncio.Task[_Cached]] = {}
        self._budget = _Budget(bounds)
        # Each token's whole verdict for a service and resource URL (format, answer and
        # audience all checked), until the answer expires: a lookup by the token's hash instead
        # of the token patterns and the audience check (about 3 us a request). Keyed, as the
        # answers are, by the hash, never the token. Per loaded service, forgotten with it after
        # a reload; bounded: emptied when full, as it only saves work the checks would redo.
        self._verdicts = weakref.WeakKeyDictionary[CompiledService,
                                                   dict[tuple[str, str], _Verdict]]()

    async def resolve(self, service: CompiledService, token: str, resource: str = "", *,
                      address: str | None) -> Principal:
        """Raises:
            AuthError: the token is malformed for the service, inactive, expired or foreign.
            AuthUnavailable: the authorization server could not be asked.
            IntrospectionThrottled: the token is not known, and the bound on introspections of
                such tokens (for the client address, or the process) is reached.
        """
        digest = hashlib.sha256(token.encode()).hexdigest()
        verdicts = self._verdicts.get(service)
        if verdicts is None:
            verdicts = self._verdicts[service] = {}
        verdict = verdicts.get((digest, resource))
        if verdict is not None and verdict.until > self._clock():
            if verdict.introspected:
                child(INTROSPECTIONS, service.name, "hit").inc()
            return verdict.principal
        principal, until = await self._resolve(service, token, digest, address)
        check_audience(service, principal, resource)
        if len(verdicts) >= self._max_entries:
            verdicts.clear()
        verdicts[digest, resource] = _Verdict(principal, until, until != math.inf)
        return principal

    async def _resolve(self, service: CompiledService, token: str, digest: str,
                       address: str | None) -> tuple[Principal, float]:
        """The token's principal, and until when that answer holds (for ever when the token
        is passed through: the principal then depends on the token alone). `digest`: the
        token's SHA-256, what answers are kept under."""
        check_format(service, token)
        spec = service.spec.auth
        if spec.resolver == "passthrough" or spec.introspection_url is None:
            return passthrough_principal(service, token), math.inf
        key = (service.name, digest)
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and cached.until > now:
            child(INTROSPECTIONS, service.name, "hit").inc()
            return _answer(cached), cached.until
        INTROSPECTIONS.labels(service.name, "miss").inc()
        asking = self._asking.get(key)
        if asking is None:
            # Checking again a token that was valid is never bounded: a flood of guesses must
            # not lock out the callers already known. Anything else spends the budget.
            if cached is None or cached.principal is None:
                self._budget.spend(_client(address), now)
            asking = asyncio.create_task(self._ask(key, service, token, spec.introspection_url))
            if not asking.done():
                self._asking[key] = asking
        # Shielded: a waiter that gives up (its client went away) leaves the answer to the others.
        entry = await asyncio.shield(asking)
        return _answer(entry), entry.until

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
        AuthError: a copy of the remembered refusal. Raising the one object again would add
            each request's frames to its traceback, keeping them alive as long as the entry.
    """
    if entry.principal is not None:
        return entry.principal
    assert entry.refusal is not None  # noqa: S101 - an entry holds one or the other
    raise copy.copy(entry.refusal)



def _client(address: str | None) -> str:
    """Whose budget a peer address spends: an IPv4 address's own, or its IPv6 /64's (one
    holder's network, in which every address is theirs to pick). None: no address is known."""
    if address is None:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))

class _Budget:
    """Token buckets of introspections: one per client address (past the bound the least
    recently seen is forgotten, and starts again full) and one for the process."""

    def __init__(self, bounds: IntrospectionBounds) -> None:
        self._bounds = bounds
        self._addresses: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)
        self._process = (float(bounds.per_process), 0.0)

    def spend(self, address: str, now: float) -> None:
        """Take one introspection from both buckets, or from neither.

        Raises:
            IntrospectionThrottled: a bucket is empty; says which, and when it has room again.
        """
        per_address, per_process = self._bounds.per_address, self._bounds.per_process
        tokens, at = self._addresses.pop(address, (float(per_address), now))
        here = refill(tokens, at, per_address, per_address / 60, now)
        everywhere = refill(*self._process, per_process, per_process / 60, now)
        if here < 1:
            self._keep(address, here, now)
            raise _throttled("address", (1 - here) * 60 / per_address)
        if everywhere < 1:
            self._keep(address, here, now)
            raise _throttled("process", (1 - everywhere) * 60 / per_process)
        self._keep(address, here - 1, now)
        self._process = (everywhere - 1, now)

    def _keep(self, address: str, tokens: float, now: float) -> None:
        self._addresses[address] = (tokens, now)  # last in the dict: the most recently seen
        if len(self._addresses) > self._bounds.addresses:
            del self._addresses[next(iter(self._addresses))]


def _throttled(bound: Literal["address", "process"], wait_s: float) -> IntrospectionThrottled:
    whose = ("Too many unknown tokens were checked from this address" if bound == "address"
             else "The gateway is checking too many unknown tokens")
    return IntrospectionThrottled(
        f"{whose} in the last minute; this token was not checked. Retry in "
        f"{math.ceil(wait_s)} seconds.", bound=bound, retry_after_s=wait_s)
