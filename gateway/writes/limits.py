"""Per-account write limits (token buckets) and single-use claims, over an injected store. Pure
except for the in-process store, which keeps its state in bounded memory.

The Redis store (gateway/redis_store.py) implements the same two operations so limits and
single-use tokens hold across replicas.
"""

from __future__ import annotations

from typing import Final, Protocol

from cachetools import LRUCache, TTLCache

MAX_TRACKED_KEYS: Final = 100_000
PENDING: Final = "pending"
"""A claim whose action has not told its outcome yet: still running, or its process died."""


class LimitStore(Protocol):
    """Where buckets and claims live: in this process, or shared between replicas."""

    async def take(self, key: str, capacity: int, per_s: float, now: float) -> float:
        """Take one token; returns 0 when allowed, else the seconds until a token is free."""
        ...

    async def claim_once(self, key: str, ttl_s: int) -> bool:
        """True the first time `key` is claimed within `ttl_s` (its state is then `PENDING`),
        False ever after."""
        ...

    async def settle(self, key: str, state: str) -> None:
        """Record what became of a claimed action (kept as long as the claim)."""
        ...

    async def state_of(self, key: str) -> str | None:
        """What became of a claimed action: `PENDING` until settled; None when unclaimed."""
        ...

    async def release(self, key: str) -> None:
        """Give a claim back (the claimed action did not happen)."""
        ...

    async def healthy(self) -> bool:
        """Whether the store answers now (what /readyz reports)."""
        ...

    async def close(self) -> None: ...


def refill(tokens: float, last: float, capacity: int, per_s: float, now: float) -> float:
    """Tokens in a bucket at `now`, given its level at `last`."""
    return min(float(capacity), tokens + max(0.0, now - last) * per_s)


class MemoryLimits:
    """Buckets and claims of this process only (one replica, or tests)."""

    def __init__(self, *, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=max_keys)
        self._claims: TTLCache[str, str] = TTLCache(maxsize=max_keys, ttl=3600)

    async def take(self, key: str, capacity: int, per_s: float, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(capacity), now))
        tokens = refill(tokens, last, capacity, per_s, now)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / per_s

    async def claim_once(self, key: str, ttl_s: int) -> bool:
        # One TTL for all claims: it is longer than any confirmation's life, so none expires early.
        if key in self._claims:
            return False
        self._claims[key] = PENDING
        return True

    async def settle(self, key: str, state: str) -> None:
        if key in self._claims:
            self._claims[key] = state

    async def state_of(self, key: str) -> str | None:
        return self._claims.get(key)

    async def release(self, key: str) -> None:
        self._claims.pop(key, None)

    async def healthy(self) -> bool:
        return True

    async def close(self) -> None:
        return None
