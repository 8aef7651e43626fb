"""`mcp-gateway serve --workers N` as a real process tree in front of the sandbox on loopback: the
workers share the port and agree on pseudonyms; the parent replaces a worker that dies and gives
up on workers that keep dying; SIGTERM lets calls in flight finish; a configuration that cannot
work is one line and exit code 2 with one process or several."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from bench.run import free_port
from gateway.server.serve import CLEANUP_S, DRAIN_S
from sandbox import create_sandbox_app
from tests.e2e.stack import serve_on_loopback
from tests.support import REPO

ANALYST = "rtly_mcp_pat_demoanalyst_s3cr3t"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "Authorization": f"Bearer {ANALYST}", "Connection": "close"}
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "list_feedback", "arguments": {"limit": 5}}}


def children_of(pid: int) -> list[int]:
    return [int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    """Running (an exited orphan may linger as a zombie until something reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@dataclass
class Sandbox:
    """The sandbox upstream on loopback, noting who asked the introspection endpoint; with
    `delay_s` set, every other request waits that long before it is answered."""

    url: str = ""
    introspected: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    delayed: int = 0
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def until_delayed(self, count: int) -> None:
        """Until `count` delayed requests have reached the upstream."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: self.delayed >= count), 15)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    upstream = Sandbox()

    @web.middleware
    async def note(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
        if request.path.endswith("/introspect"):
            upstream.introspected.append(request.path)
        elif upstream.delay_s:
            async with upstream.arrived:
                upstream.delayed += 1
                upstream.arrived.notify_all()
            await asyncio.sleep(upstream.delay_s)
        return await handler(request)

    app = create_sandbox_app()
    app.middlewares.append(note)
    runner, upstream.url = await serve_on_loopback(app)
    yield upstream
    await runner.cleanup()


def environment(upstream: str = "http://127.0.0.1:9", **settings: str) -> dict[str, str]:
    """This checkout's package, the upstreams at `upstream`, JSON logs without the access log,
    and no other GATEWAY_* setting than `settings`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {**inherited, "PYTHONPATH": str(REPO), "RETENTLY_API_URL": upstream,
            "REFINER_API_URL": upstream, "REFINER_AUTH_URL": upstream,
            "GATEWAY_LOG_JSON": "true", "GATEWAY_ACCESS_LOG": "false", **settings}


def serve(port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "gateway", "serve", "--port", str(port),
            "--workers", str(workers)]


@contextlib.contextmanager
def serving(port: int, env: dict[str, str], stderr: Path,
            workers: int = 2) -> Iterator[subprocess.Popen[bytes]]:
    """`serve --workers N` in its own session, its stderr in a file (a pipe nobody reads would
    fill up and block the workers); the whole tree is killed if the test leaves it running."""
    with stderr.open("wb") as errors:
        process = subprocess.Popen(serve(port, workers), env=env,  # noqa: S603
                                   stdout=subprocess.DEVNULL, stderr=errors,
                                   start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def plain_lines(stderr: str) -> list[str]:
    """What stderr says besides the JSON log events."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


async def stopped_cleanly(process: subprocess.Popen[bytes], stderr: Path) -> None:
    """SIGTERM to the parent; it exits 0 once its workers drained, none of them killed at the
    deadline (the parent allows DRAIN_S + CLEANUP_S; the margin above it is for a loaded
    machine, where saving a process's coverage data alone can take seconds). On failure, what
    the parent logged says which worker was slow, and at what."""
    process.send_signal(signal.SIGTERM)
    deadline = DRAIN_S + CLEANUP_S + 15
    try:
        code = await asyncio.to_thread(process.wait, deadline)
    except subprocess.TimeoutExpired:
        logged = await asyncio.to_thread(stderr.read_text)
        pytest.fail(f"not stopped within {deadline} s of SIGTERM; it logged:\n{logged[-4000:]}")
    logged = await asyncio.to_thread(stderr.read_text)
    assert code == 0, logged[-4000:]
    assert "worker_killed" not in logged, logged[-4000:]


async def wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, "serve exited at startup"
            try:
                if (await client.get(url + "/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("serve --workers did not become ready")


async def replacement_of(process: subprocess.Popen[bytes], gone: set[int],
                         workers: int = 2) -> list[int]:
    """The workers once `workers` of them run again, none of them in `gone`; [] when the parent
    has exited instead."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return []
        current = [pid for pid in children_of(process.pid) if alive(pid)]
        if len(current) == workers and not gone & set(current):
            return current
        await asyncio.sleep(0.05)
    raise AssertionError(f"no worker replaced {gone} within 15 s")


async def test_two_workers_share_the_port_agree_on_pseudonyms_and_stop_together(
        sandbox: Sandbox, tmp_path: Path) -> None:
    port = free_port()
    env = environment(sandbox.url, GATEWAY_SECRET_KEY="")
    with serving(port, env, tmp_path / "stderr") as process:
        url = f"http://127.0.0.1:{port}"
        await wait_until_serving(url, process)
        workers = children_of(process.pid)
        assert len(workers) == 2
        seen: set[str] = set()
        for _ in range(24):  # a new connection each time, so the kernel spreads them
            async with httpx.AsyncClient() as client:
                answer: Any = (await client.post(url + "/retently/mcp", json=CALL,
                                                 headers=HEADERS)).json()
            rows = answer["result"]["structuredContent"]["items"]
            seen.add(rows[0]["email"])
        # Each worker asked about the token once (its own cache): both answered calls.
        assert len(sandbox.introspected) == 2
        # ...and the first row's pseudonym was the same whichever worker answered.
        assert len(seen) == 1 and next(iter(seen)).endswith("@pseudonym.invalid")
        await stopped_cleanly(process, tmp_path / "stderr")
    assert not any(alive(worker) for worker in workers)
    assert "workers_without_redis" in (tmp_path / "stderr").read_text()


def test_serve_refuses_a_worker_count_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.server.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--workers", "0"])
    assert exited.value.code == 2
    assert "workers" in capsys.readouterr().err


async def test_workers_stop_by_themselves_when_the_parent_is_killed(
        sandbox: Sandbox, tmp_path: Path) -> None:
    port = free_port()
    with serving(port, environment(sandbox.url), tmp_path / "stderr") as process:
        await wait_until_serving(f"http://127.0.0.1:{port}", process)
        workers = children_of(process.pid)
        process.kill()
        process.wait()
        deadline = time.monotonic() + 15
        while any(alive(w) for w in workers) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert not any(alive(w) for w in workers)


def test_workers_need_a_fixed_port(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.server.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--workers", "2", "--port", "0"])
    assert exited.value.code == 2
    assert "fixed port" in capsys.readouterr().err


class Probes:
    """Clients each sending GET /healthz on a new connection, one request after another, noting
    each status or the name of the transport error."""

    def __init__(self, url: str, clients: int) -> None:
        self.outcomes: list[list[int | str]] = [[] for _ in range(clients)]
        self._url = url
        self._answered = asyncio.Condition()
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._probe(each)) for each in self.outcomes]

    def count(self) -> int:
        return sum(map(len, self.outcomes))

    async def at_least(self, count: int) -> None:
        async with self._answered:
            await asyncio.wait_for(self._answered.wait_for(lambda: self.count() >= count), 15)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _probe(self, outcomes: list[int | str]) -> None:
        async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(
                max_keepalive_connections=0)) as client:
            while not self._stop.is_set():
                try:
                    outcomes.append((await client.get(self._url + "/healthz")).status_code)
                except httpx.TransportError as exc:
                    outcomes.append(type(exc).__name__)
                async with self._answered:
                    self._answered.notify_all()


async def test_a_worker_killed_outright_is_replaced_while_the_others_keep_answering(
        sandbox: Sandbox, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(port, environment(sandbox.url), tmp_path / "stderr") as process:
        await wait_until_serving(url, process)
        before = children_of(process.pid)
        probes = Probes(url, clients=4)
        await probes.at_least(40)  # the load is under way

        os.kill(before[0], signal.SIGKILL)
        after = await replacement_of(process, {before[0]})
        await probes.at_least(probes.count() + 40)  # ...and goes on with the new worker
        await probes.stop()

        assert before[1] in after  # the survivor was left alone
        for each in probes.outcomes:  # at most the connection the killed worker held, each
            assert sum(1 for outcome in each if outcome != 200) <= 1, each
        await stopped_cleanly(process, tmp_path / "stderr")
    logged = (tmp_path / "stderr").read_text()
    restarts = [line for line in logged.splitlines() if "worker_restarted" in line]
    assert len(restarts) == 1, logged
    assert f'"replaces": {before[0]}' in restarts[0] and "killed by SIGKILL" in restarts[0]
    assert not any(alive(pid) for pid in after)


async def test_workers_that_keep_dying_make_the_parent_give_up_with_one_line(
        sandbox: Sandbox, tmp_path: Path) -> None:
    port = free_port()
    with serving(port, environment(sandbox.url), tmp_path / "stderr") as process:
        await wait_until_serving(f"http://127.0.0.1:{port}", process)
        workers = children_of(process.pid)
        killed: set[int] = set()
        for _ in range(10):  # the parent gives up after a handful of deaths within seconds
            victim = workers[-1]
            os.kill(victim, signal.SIGKILL)
            killed.add(victim)
            workers = await replacement_of(process, killed)
            if not workers:
                break
        code = await asyncio.to_thread(process.wait, 30)
    logged = (tmp_path / "stderr").read_text()
    assert code == 1
    assert len(killed) == 5
    [line] = plain_lines(logged)
    assert line.startswith("mcp-gateway serve: ") and "SIGKILL" in line, line
    assert "Traceback" not in logged
    assert sum("worker_restarted" in line for line in logged.splitlines()) == 4


async def refused(url: str, within_s: float) -> bool:
    """Whether a new connection to `url` is refused within `within_s`."""
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            try:
                await client.get(url + "/healthz", headers={"Connection": "close"})
            except httpx.ConnectError:
                return True
            await asyncio.sleep(0.02)
    return False


def sigterm_to_the_parent(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)


def ctrl_c(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGINT)  # as a terminal does: to the parent and its workers


@pytest.mark.parametrize("stop", [sigterm_to_the_parent, ctrl_c], ids=["SIGTERM", "Ctrl+C"])
async def test_a_stop_closes_the_port_at_once_and_lets_every_call_in_flight_finish(
        sandbox: Sandbox, tmp_path: Path,
        stop: Callable[[subprocess.Popen[bytes]], None]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(port, environment(sandbox.url), tmp_path / "stderr") as process:
        await wait_until_serving(url, process)
        workers = children_of(process.pid)
        sandbox.delay_s = 2.0
        async with httpx.AsyncClient(timeout=30) as client:
            # New connections, spread over both workers by the kernel.
            calls = [asyncio.create_task(client.post(url + "/retently/mcp", json=CALL,
                                                     headers=HEADERS)) for _ in range(6)]
            await sandbox.until_delayed(6)

            stop(process)

            assert await refused(url, within_s=1.5)  # no worker accepts any more...
            assert not any(call.done() for call in calls)
            answers = await asyncio.gather(*calls)  # ...and the calls under way complete
        assert [answer.status_code for answer in answers] == [200] * 6
        assert all(answer.json()["result"]["isError"] is False for answer in answers)
        assert await asyncio.to_thread(process.wait, 30) == 0
    assert not any(alive(worker) for worker in workers)
    logged = (tmp_path / "stderr").read_text()
    assert "Traceback" not in logged and "worker_killed" not in logged


SUPERVISED = """
import os, signal, sys, time
from gateway.server.workers import run_workers

def stuck(ready):  # a worker that will not stop: it ignores SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready()
    os.write(1, b"ready\\n")  # one write: the two workers' lines must not mix
    time.sleep(60)

def crashing(ready):
    raise RuntimeError("a bug at startup")

ended = run_workers(2, globals()[sys.argv[1]], stop_within_s=0.5)
print(ended.reason, file=sys.stderr)
sys.exit(ended.code)
"""
"""The supervisor alone, with workers that misbehave and a short stop deadline."""


def supervise(worker: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SUPERVISED, worker],  # noqa: S603
                            env=environment(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def test_workers_that_do_not_stop_by_the_deadline_are_killed() -> None:
    process = supervise("stuck")
    try:
        assert process.stdout is not None
        assert [process.stdout.readline() for _ in range(2)] == ["ready\n"] * 2
        workers = children_of(process.pid)
        stopped = time.monotonic()

        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)

        assert process.returncode == 0
        assert time.monotonic() - stopped < 5  # the 0.5 s deadline, not the workers' minute
        assert out.count("worker_killed") == 2
        assert not any(alive(worker) for worker in workers)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def test_workers_that_crash_while_starting_are_retried_then_given_up_on() -> None:
    process = supervise("crashing")
    try:
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()

    assert process.returncode == 1
    assert re.fullmatch(r"workers keep dying \(5 within 30 s; the last, pid \d+, exited with "
                        r"code 1\): stopping", err.splitlines()[-1]), err
    # Replacements 0.1, 0.2 and 0.4 s after the first three deaths; the fourth death's was
    # still waiting (0.8 s) when the fifth came.
    assert out.count("worker_restarted") in (3, 4)
    assert err.count("RuntimeError: a bug at startup") == 5  # each crash says where


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


STARTUP_PROBLEMS = [
    pytest.param({"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0"},
                 "GATEWAY_REDIS_URL: Redis cannot be used (ConnectionError: ", id="redis down"),
    pytest.param({"GATEWAY_AUDIT_LOG_PATH": "/proc/nope/audit.log"},
                 "GATEWAY_AUDIT_LOG_PATH: /proc/nope/audit.log cannot be written (",
                 id="audit path"),
    pytest.param({"GATEWAY_AUDIT_LOG_PATH": "{tmp}"}, "GATEWAY_AUDIT_LOG_PATH: {tmp} cannot be "
                 "written (Is a directory)", id="audit directory"),
    pytest.param({"port": "taken"}, "cannot listen on 127.0.0.1:{port}: address already in use",
                 id="port in use"),
]


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "two workers"])
@pytest.mark.parametrize(("settings", "says"), STARTUP_PROBLEMS)
def test_a_configuration_that_cannot_work_is_one_line_and_exit_code_2(
        settings: dict[str, str], says: str, workers: int, tmp_path: Path,
        taken_port: int) -> None:
    port = taken_port if "port" in settings else free_port()
    variables = {name: value.format(tmp=tmp_path) for name, value in settings.items()
                 if name != "port"}
    started = time.monotonic()

    finished = subprocess.run(serve(port, workers), capture_output=True, text=True,  # noqa: S603
                              timeout=60, env=environment(**variables))

    assert finished.returncode == 2
    [line] = plain_lines(finished.stderr)
    assert line.startswith("mcp-gateway serve: " + says.format(tmp=tmp_path, port=port)), line
    assert "Traceback" not in finished.stderr
    assert time.monotonic() - started < 30
