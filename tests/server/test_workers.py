"""`mcp-gateway serve --workers N` as a real process tree in front of the sandbox on loopback: both
workers answer, they agree on pseudonyms, and stopping the parent stops them all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
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
from sandbox import create_sandbox_app
from tests.e2e.stack import _serve
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
    runner, upstream.url = await _serve(app)
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
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0
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
