"""When an upstream exchange is worth sending again, and how long to wait first. Pure.

Only reads are retried (GET, HEAD, or a request declared `idempotent`): a write is sent once,
whatever happens, so a retry can never apply a change twice. A read is retried after a failure
that shows the upstream did not serve it: a refused or broken connection, 429, 502, 503, 504.
A timeout is not retried: the call's deadline is spent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final

RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
"""Answers that say "not now" rather than "no": worth a second try for a read."""
BREAKER_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
"""Answers that count as the upstream failing (for the circuit breaker)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    """Sends of one read at most, the first included."""
    base_s: float = 0.1
    cap_s: float = 2.0
    """Longest backoff between two sends (before jitter)."""
    longest_wait_s: float = 5.0
    """A Retry-After longer than this is not waited for inside a call: the caller is told."""

    def backoff_s(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        """"Full jitter" backoff before send `attempt + 1` (attempt counts from 1): a random
        wait below an exponentially growing bound, so callers that failed together do not
        retry together."""
        return draw() * min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))


def retry_after_s(value: str | None, now: float) -> float | None:
    """A Retry-After header's wait in seconds: delta-seconds or an HTTP-date (RFC 9110 10.2.3),
    never negative; None when absent or unreadable. `now` is the wall clock (UNIX seconds)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        return None
    return max(0.0, when.timestamp() - now)
