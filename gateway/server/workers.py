"""Several serving processes on one port (`serve --workers N`) and the parent that supervises
them: off the request path.

The parent loads and checks the specs once, then forks N workers; each runs its own event loop and
binds the same port with SO_REUSEPORT, so the kernel spreads connections over them. Nothing is
shared between workers at run time (the gateway keeps no state between requests); what must agree
is fixed before the fork: the settings, the spec registry, and the HMAC key for pseudonyms and
write confirmations.

The parent replaces a worker that dies (killed, crashed), after a delay that doubles with each
recent death, and gives up once workers keep dying: a supervisor above it (systemd, Kubernetes)
restarting the whole service is better than a loop that never recovers. A worker whose
configuration cannot work (Redis, the audit file, the port) tells the parent why through a pipe
and exits with STARTUP_FAILED: the parent prints that one line and stops, since another worker
would fail the same way (a replacement that cannot start is one more death instead: what
stopped it may pass). SIGTERM or SIGINT to the parent is passed on once, as SIGTERM, to each
worker, which stops accepting at once and lets its calls in flight finish; past `stop_within_s`
the parent kills what is left. A worker still starting is told once it reports ready (through
the same pipe), so that the signal reaches its event loop's handler: the default action could
kill it between a log line and its newline. A worker whose parent is gone stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Final, NoReturn

import structlog
from aiohttp import web

from gateway.errors import StartupError

log = structlog.get_logger("gateway.workers")
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
STARTUP_FAILED: Final = 3
"""A worker's exit code when its configuration cannot work; its reason is in the report pipe.
Not 1 (any crash) nor 2 (what a Python that cannot start its script uses)."""
FIRST_DELAY_S: Final = 0.1
"""Delay before replacing a worker after the first recent death; it doubles with each more."""
LONGEST_DELAY_S: Final = 5.0
DEATHS_ALLOWED: Final = 5
"""Deaths within DEATH_WINDOW_S at which the parent gives up: a fault, not bad luck."""
DEATH_WINDOW_S: Final = 30.0
WAKE_EVERY_S: Final = 1.0
"""The parent looks at its workers at least this often, even when no signal woke it."""
REPORT_BYTES: Final = 4000
"""A report fits one atomic pipe write (PIPE_BUF is 4096 on Linux), so reports never mix."""
READY: Final = "ready"
"""A worker's report once started; any other report is why it could not start."""


@dataclass(frozen=True)
class Ended:
    """How the workers ended: `code` is the exit code for the command (0 when asked to stop; 1
    when workers kept dying; 2 when one could not start) and `reason` the line to print."""

    code: int
    reason: str = ""


@dataclass(frozen=True)
class _Restart:
    due: float
    replaces: int
    cause: str
    delay_s: float


Serve = Callable[[Callable[[], None]], None]
"""What a worker runs: `serve(ready)` calls `ready()` once its app has started, returns when
its server has stopped, and raises StartupError when its configuration cannot work."""


@dataclass
class _Worker:
    replacement: bool
    """It replaces one that died: a first worker that cannot start ends the service, a
    replacement that cannot start is one more death."""
    ready: bool = False


def run_workers(count: int, serve: Serve, *, stop_within_s: float,
                on_exit: Callable[[int], None] = lambda _pid: None) -> Ended:
    """Fork `count` processes running `serve` and supervise them until asked to stop or until
    they cannot go on; `on_exit(pid)` runs for each worker that ended. SIGHUP is passed on to
    every worker (each reloads its specs)."""
    supervisor = _Supervisor(serve, stop_within_s, on_exit)
    with supervisor.signals():
        for _ in range(count):
            supervisor.start(replacement=False)
        return supervisor.run()


class _Supervisor:
    """The parent's state: its workers, the deaths it has seen lately, the restarts it owes."""

    def __init__(self, serve: Serve, stop_within_s: float,
                 on_exit: Callable[[int], None]) -> None:
        self._serve = serve
        self._on_exit = on_exit
        self._reload_asked = False
        self._stop_within_s = stop_within_s
        self._workers: dict[int, _Worker] = {}
        self._deaths: deque[float] = deque()
        self._restarts: list[_Restart] = []
        self._stop_asked = False
        self._ended: Ended | None = None
        self._kill_at = math.inf
        self._reports: dict[int, str] = {}
        self._unread = b""
        self._report_r, self._report_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._report_r, False)
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """Stop signals ask for a stop; those and SIGCHLD wake the loop through a pipe (so none
        is missed between two looks), for as long as the supervisor runs."""

        def ask_stop(_signum: int, _frame: FrameType | None) -> None:
            self._stop_asked = True

        def ask_reload(_signum: int, _frame: FrameType | None) -> None:
            self._reload_asked = True

        previous = {signum: signal.signal(signum, ask_stop) for signum in STOP_SIGNALS}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, ask_reload)
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for fd in (self._report_r, self._report_w, self._wake_r, self._wake_w):
                os.close(fd)

    def start(self, *, replacement: bool) -> int:
        sys.stdout.flush()  # or what is buffered would be written again by the child
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _be_worker(self._serve, self._report_w,
                       inherited=(self._report_r, self._wake_r, self._wake_w))
        self._workers[pid] = _Worker(replacement)
        return pid

    def run(self) -> Ended:
        while True:
            self._wait()
            if self._stop_asked and self._ended is None:
                self._stop(Ended(0))
            if self._reload_asked:
                self._reload_asked = False
                self._pass_reload()
            for pid, status in _reaped():
                self._exited(pid, status)
            if self._ended is None:
                self._restart_due()
            elif not self._workers:
                return self._ended
            elif time.monotonic() >= self._kill_at:
                self._kill_stragglers()

    def _wait(self) -> None:
        """Until a signal, a report, or the next thing due (a restart, the stop deadline)."""
        due = min([self._kill_at, *(restart.due for restart in self._restarts)])
        timeout = max(0.0, min(WAKE_EVERY_S, due - time.monotonic()))
        readable, _, _ = select.select([self._wake_r, self._report_r], [], [], timeout)
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
        if self._report_r in readable:
            self._read_reports()

    def _read_reports(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._report_r, 65536):
                self._unread += chunk
        *lines, self._unread = self._unread.split(b"\n")
        for line in lines:
            pid, _, said = line.decode(errors="replace").partition(" ")
            worker = self._workers.get(int(pid))
            if said != READY:
                self._reports[int(pid)] = said
            elif worker is not None and not worker.ready:
                worker.ready = True
                if self._ended is not None:  # it was starting when the stop began
                    _signal(int(pid), signal.SIGTERM)

    def _exited(self, pid: int, status: int) -> None:
        worker = self._workers.pop(pid, None)
        if worker is None:
            return  # not a worker: the parent starts no other process, but be sure
        self._on_exit(pid)
        code = os.waitstatus_to_exitcode(status)
        if self._ended is not None:
            if code not in (0, STARTUP_FAILED, -signal.SIGTERM, -signal.SIGKILL):
                log.warning("worker_failed_while_stopping", worker=pid, cause=_cause(code))
            return
        reason = ""
        if code == STARTUP_FAILED:
            self._read_reports()  # written before it exited, perhaps not yet read
            reason = self._reports.pop(pid, f"worker {pid} could not start")
            if not worker.replacement:
                self._stop(Ended(2, reason))
                return
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths[0] < now - DEATH_WINDOW_S:
            self._deaths.popleft()
        deaths = len(self._deaths)
        if deaths >= DEATHS_ALLOWED:
            self._stop(Ended(2, reason) if reason else Ended(1, (
                f"workers keep dying ({deaths} within {DEATH_WINDOW_S:g} s; the last, "
                f"pid {pid}, {_cause(code)}): stopping")))
            return
        delay = min(FIRST_DELAY_S * 2 ** (deaths - 1), LONGEST_DELAY_S)
        self._restarts.append(_Restart(now + delay, pid, reason or _cause(code), delay))

    def _restart_due(self) -> None:
        now = time.monotonic()
        for restart in [r for r in self._restarts if r.due <= now]:
            self._restarts.remove(restart)
            pid = self.start(replacement=True)
            log.warning("worker_restarted", worker=pid, replaces=restart.replaces,
                        cause=restart.cause, after_s=restart.delay_s)

    def _pass_reload(self) -> None:
        """SIGHUP to each worker serving; one still starting loads the tree as it is now."""
        if self._ended is None:
            for pid, worker in self._workers.items():
                if worker.ready:
                    _signal(pid, signal.SIGHUP)

    def _stop(self, ended: Ended) -> None:
        """Once: each worker is told to stop (once; a second signal while it drains would gain
        nothing; one still starting is told when ready), and given until the deadline."""
        self._ended = ended
        self._restarts.clear()
        self._kill_at = time.monotonic() + self._stop_within_s
        for pid, worker in self._workers.items():
            if worker.ready:
                _signal(pid, signal.SIGTERM)

    def _kill_stragglers(self) -> None:
        for pid in self._workers:
            log.warning("worker_killed", worker=pid, after_s=self._stop_within_s,
                        detail="it had not stopped by the deadline")
            _signal(pid, signal.SIGKILL)
        self._kill_at = math.inf  # once; the kills are reaped as they come


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone, not yet reaped
        os.kill(pid, signum)


def _reaped() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of each child that has ended, without waiting for any."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def _cause(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _be_worker(serve: Serve, report: int, *, inherited: tuple[int, ...]) -> NoReturn:
    """The forked child: serve, then leave without running the parent's cleanup. Whatever
    happens (even a late signal), it must never return into the parent's code."""
    code = 1
    try:
        try:
            code = _work(serve, report, inherited)
        finally:
            for signum in STOP_SIGNALS:  # stopping already; a late signal changes nothing
                signal.signal(signum, signal.SIG_IGN)
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
    finally:
        os._exit(code)


def _work(serve: Serve, report: int, inherited: tuple[int, ...]) -> int:
    """Run `serve` in the child; its exit code."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in inherited:
        os.close(fd)
    for signum in STOP_SIGNALS:  # until serve's event loop takes them over
        signal.signal(signum, _stop_while_starting)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # likewise; the tree is being loaded anyway

    def ready() -> None:
        os.write(report, f"{os.getpid()} {READY}\n".encode())

    try:
        serve(ready)
    except StartupError as exc:
        line = " ".join(str(exc).split())
        os.write(report, f"{os.getpid()} {line}"[:REPORT_BYTES].encode() + b"\n")
        return STARTUP_FAILED
    except KeyboardInterrupt:  # a Ctrl+C just after the loop let go of SIGINT: stopped anyway
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # a crash: say where, then let the parent replace this worker
        traceback.print_exc()
        return 1
    return 0


def _stop_while_starting(_signum: int, _frame: FrameType | None) -> NoReturn:
    """Told to stop before serving (by a signal to the whole group: the parent waits for
    ready): nothing is in flight, so leave at once. Not by raising: an exception raised in a
    weakref callback is only printed."""
    os._exit(0)


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
