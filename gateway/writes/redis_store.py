"""Redis-backed write limits and single-use claims, so they hold across replicas. An edge module:
only app.py imports it, and only when GATEWAY_REDIS_URL is set.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as redis

from gateway.errors import StartupError, StoreUnavailable
from gateway.writes.limits import PENDING

# A token bucket in one atomic step: refill by elapsed time, then take one token or say how long
# until one is free. The key expires once a full bucket would have refilled.
_TAKE: Final = """
local capacity = tonumber(ARGV[1])
local per_s = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = tonumber(state[1]) or capacity
local last = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - last) * per_s)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / per_s end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'last', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / per_s) + 60)
return tostring(wait)
"""
PREFIX: Final = "mcp-gateway:"


class RedisLimits:
    """The LimitStore protocol over one Redis connection pool."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._take = client.register_script(_TAKE)

    @classmethod
    async def connect(cls, url: str) -> RedisLimits:
        """Raises:
            StartupError: a URL Redis cannot use, or a server that cannot be reached at startup
                (fail fast, not per call).
        """
        try:
            client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
            await client.ping()
        except (ValueError, redis.RedisError) as exc:
            raise StartupError(f"GATEWAY_REDIS_URL: Redis cannot be used ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:200]})") from exc
        return cls(client)

    async def take(self, key: str, capacity: int, per_s: float, now: float) -> float:
        """Raises:
            StoreUnavailable: Redis did not answer.
        """
        try:
            wait = await self._take(keys=[PREFIX + key], args=[capacity, per_s, now])
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return float(wait)

    async def claim_once(self, key: str, ttl_s: int) -> bool:
        """Raises:
            StoreUnavailable: Redis did not answer (nothing was claimed, as far as we know).
        """
        try:
            return bool(await self._client.set(PREFIX + key, PENDING, nx=True,
                                               ex=max(1, ttl_s)))
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    async def settle(self, key: str, state: str) -> None:
        """Raises:
            StoreUnavailable: Redis did not answer.
        """
        try:
            await self._client.set(PREFIX + key, state, xx=True, keepttl=True)
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    async def state_of(self, key: str) -> str | None:
        """Raises:
            StoreUnavailable: Redis did not answer.
        """
        try:
            found = await self._client.get(PREFIX + key)
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        if isinstance(found, bytes):
            return found.decode(errors="replace")
        return None if found is None else str(found)

    async def release(self, key: str) -> None:
        """Raises:
            StoreUnavailable: Redis did not answer.
        """
        try:
            await self._client.delete(PREFIX + key)
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    async def healthy(self) -> bool:
        try:
            return bool(await self._client.ping())
        except redis.RedisError:
            return False

    async def close(self) -> None:
        await self._client.aclose()


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
