"""Several serving processes on one port (`serve --workers N`): off the request path.

The parent loads and checks the specs once, then forks N workers; each runs its own event loop and
binds the same port with SO_REUSEPORT, so the kernel spreads connections over them. Nothing is
shared between workers at run time (the gateway keeps no state between requests); what must agree
is fixed before the fork: the settings, the spec registry, and the HMAC key for pseudonyms and
write confirmations. The parent forwards SIGTERM and SIGINT to the workers, and when one worker
exits it stops the others, so a supervisor (systemd, Kubernetes) sees one process live or die.
A worker whose parent is gone (killed outright) stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from types import FrameType

from aiohttp import web

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_workers(count: int, serve: Callable[[], None]) -> int:
    """Fork `count` processes running `serve` (which returns when its server stops); return
    the exit code of the first to end (0 when they were asked to stop)."""
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # the worker: serve, then leave without running the parent's cleanup
            code = 1
            try:
                serve()
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(children, signum)

    for stop in STOP_SIGNALS:
        signal.signal(stop, forward)
    _, status = os.wait()
    first_code = os.waitstatus_to_exitcode(status)
    _signal_all(children, signal.SIGTERM)  # one is gone: the others follow
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    return 0 if stopping else (first_code if first_code > 0 else 1)


def _signal_all(children: list[int], signum: int) -> None:
    for pid in children:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def stop_when_orphaned(parent: int, every_s: float = 1.0
                       ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context for a worker's app: when the parent process is gone (its pid is no
    longer our parent's), stop gracefully as if told to."""

    async def watch(_app: web.Application) -> AsyncIterator[None]:
        async def poll() -> None:
            while os.getppid() == parent:  # noqa: ASYNC110 - nothing to wait on but time
                await asyncio.sleep(every_s)
            os.kill(os.getpid(), signal.SIGTERM)

        task = asyncio.create_task(poll())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return watch
