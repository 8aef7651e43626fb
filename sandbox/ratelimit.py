"""Fixed-window request counting for the emulated upstream limits (per key, per minute).

Pure: the clock comes in as an argument, so tests step time instead of sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    """UNIX second at which the current window ends."""
    retry_after: int
    """Whole seconds until the window ends (at least 1); meaningful when refused."""


class RateLimiter:
    """Counts hits per key in windows aligned to the clock (e.g. each wall-clock minute)."""

    def __init__(self, clock: Callable[[], datetime], *, window_seconds: int = 60) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self._clock = clock
        self._window = window_seconds
        self._counts: dict[str, tuple[int, int]] = {}

    def hit(self, key: str, limit: int) -> Decision:
        """Record one request for `key` and say whether it is within `limit`."""
        now = self._clock().timestamp()
        window_start = int(now // self._window) * self._window
        start, count = self._counts.get(key, (window_start, 0))
        if start != window_start:
            count = 0
        count += 1
        self._counts[key] = (window_start, count)
        reset = window_start + self._window
        return Decision(
            allowed=count <= limit,
            limit=limit,
            remaining=max(limit - count, 0),
            reset=reset,
            retry_after=max(1, math.ceil(reset - now)),
        )
