"""Deadlines of upstream exchanges, kept by one timer for all of them. An edge.

`asyncio.timeout` arms a loop timer on entry and cancels it on exit: about 8 us an exchange
with uvloop, about 1% of a de-identified tool call. An exchange is cut after seconds (the
upstream timeout, 10 s by default), where a twentieth of a second later makes no difference;
so one timer, firing every TICK_S while any exchange is open, cancels the tasks whose deadline
has passed, as `asyncio.timeout` would, and the exchange raises TimeoutError in the same way.
A deadline under FINE_S keeps `asyncio.timeout`, whose precision it needs.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Final

TICK_S: Final = 0.05
"""How late past its deadline an exchange may be cut, at most (plus the loop's own delay)."""
FINE_S: Final = 1.0
"""Deadlines shorter than this are cut by a timer of their own (`asyncio.timeout`)."""


class Deadlines:
    """The open exchanges of one event loop, and the one timer that cuts them."""

    def __init__(self) -> None:
        self._open: dict[_Cut, None] = {}
        """An ordered set: the exchanges within a deadline now."""
        self._timer: asyncio.TimerHandle | None = None

    def within(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """Cut the body with TimeoutError after `seconds` (at most TICK_S late); a
        cancellation from elsewhere stays a CancelledError."""
        if seconds < FINE_S:
            return asyncio.timeout(seconds)
        return _Cut(self, seconds)

    @property
    def open(self) -> int:
        return len(self._open)

    def _enter(self, cut: _Cut, loop: asyncio.AbstractEventLoop) -> None:
        self._open[cut] = None
        if self._timer is None:
            self._timer = loop.call_later(TICK_S, self._tick, loop)

    def _leave(self, cut: _Cut) -> None:
        del self._open[cut]

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the task of each exchange past its deadline; again in a tick while any is
        open (none armed while nothing is)."""
        self._timer = None
        now = loop.time()
        for cut in self._open:  # cancel() only schedules: the set does not change meanwhile
            if not cut.expiring and cut.deadline <= now:
                cut.expiring = True
                cut.task.cancel()
        if self._open:
            self._timer = loop.call_later(TICK_S, self._tick, loop)


class _Cut:
    """One exchange within its deadline: `asyncio.timeout`'s protocol on the shared timer."""

    __slots__ = ("deadline", "expiring", "task", "_deadlines", "_seconds")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self.expiring = False
        self.deadline = 0.0
        self.task: asyncio.Task[object]

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is only kept inside a task")
        loop = task.get_loop()
        self.task = task
        self.deadline = loop.time() + self._seconds
        self._deadlines._enter(self, loop)

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self._deadlines._leave(self)
        # As asyncio.timeout: the cancellation this deadline asked for is taken back; it is a
        # TimeoutError when it is what ended the body and nobody else asked for one too.
        if self.expiring and self.task.uncancel() == 0 and kind is asyncio.CancelledError:
            raise TimeoutError from error
