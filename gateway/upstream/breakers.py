"""Circuit breakers: stop sending to an upstream that is failing or asked to wait. Pure (a clock
is passed in).

Two kinds, because an upstream's trouble has two scopes:

- one per service, for the upstream as a whole: it opens after `threshold` failures in a row
  (refused or timed-out connections, 500/502/503/504), or at once on a 503 with Retry-After;
- one per service and credential, for a 429 (a rate limit is usually per account or token): a
  429 with Retry-After holds back that caller's requests for the wait, not everybody's.

While open, a request is refused at once with the wait (CircuitOpen), and the upstream is not
asked. When the wait is over the breaker is half-open: one request goes through as a probe, the
others are refused until it settles; its success closes the breaker, its failure opens it again.
Breakers live in one process's memory, like any cache of the gateway: each replica learns alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from cachetools import LRUCache

_PROBE_WAIT_S: Final = 1.0
"""The wait told to callers refused while a half-open probe is out."""


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    PROBING = "probing"


@dataclass(slots=True)
class Breaker:
    threshold: int
    open_s: float
    """How long the breaker stays open after failures without a Retry-After."""
    state: State = State.CLOSED
    failures: int = 0
    until: float = 0.0
    """While open: when a probe may be sent."""
    reason: str = "failed"
    """Why it is open, in the words of a tool error: "answered HTTP 503"."""

    def admit(self, now: float) -> float | None:
        """None when a request may be sent (it may be the probe), else the wait in seconds."""
        if self.state is State.CLOSED:
            return None
        if self.state is State.OPEN and now >= self.until:
            self.state = State.PROBING
            return None
        if self.state is State.PROBING:
            return _PROBE_WAIT_S
        return self.until - now

    def succeeded(self) -> None:
        self.state, self.failures = State.CLOSED, 0

    def failed(self, now: float, wait_s: float | None = None, *,
               reason: str = "could not be reached") -> None:
        """A failure; `wait_s` (a Retry-After) opens the breaker at once for that long."""
        self.failures += 1
        if wait_s is not None or self.state is State.PROBING or self.failures >= self.threshold:
            self.state = State.OPEN
            self.until = now + (self.open_s if wait_s is None else wait_s)
            self.reason = (f"{reason} and asked to wait" if wait_s is not None else
                           f"{reason} {self.failures} times in a row" if self.failures > 1
                           else reason)

    def settled_without_answer(self) -> None:
        """A probe that ended without telling anything (cancelled, refused locally): let the
        next request probe instead of leaving the breaker half-open for ever."""
        if self.state is State.PROBING:
            self.state, self.until = State.OPEN, 0.0


@dataclass
class Breakers:
    """The breakers of one process, made on first use; the per-credential ones are bounded."""

    threshold: int
    open_s: float
    longest_open_s: float
    """A Retry-After is believed up to this long."""
    services: dict[str, Breaker] = field(default_factory=dict)
    callers: LRUCache[tuple[str, str], Breaker] = field(
        default_factory=lambda: LRUCache(maxsize=10_000))

    def of_service(self, service: str) -> Breaker:
        found = self.services.get(service)
        if found is None:
            found = self.services[service] = Breaker(self.threshold, self.open_s)
        return found

    def of_caller(self, service: str, credential: str) -> Breaker | None:
        """The caller's breaker, when a 429 ever made one (most callers never need one)."""
        return self.callers.get((service, credential))

    def hold_caller(self, service: str, credential: str, now: float, wait_s: float) -> None:
        """A 429 with Retry-After: hold this caller's requests back for the wait."""
        key = (service, credential)
        found = self.callers.get(key)
        if found is None:
            found = self.callers[key] = Breaker(1, self.open_s)
        found.failed(now, wait_s, reason="rate-limited this credential (HTTP 429)")

    def bounded(self, wait_s: float | None) -> float | None:
        return None if wait_s is None else min(wait_s, self.longest_open_s)
