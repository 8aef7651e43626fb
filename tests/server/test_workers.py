"""`mcp-gateway serve --workers 2` as a real process tree in front of the sandbox on loopback: both
workers answer, they agree on pseudonyms, and stopping the parent stops them all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from bench.run import free_port
from sandbox import create_sandbox_app
from tests.e2e.stack import _serve

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


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[str, list[str]]]:
    """The sandbox upstream, noting who asked the introspection endpoint."""
    introspected: list[str] = []

    @web.middleware
    async def note(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
        if request.path.endswith("/introspect"):
            introspected.append(request.path)
        return await handler(request)

    app = create_sandbox_app()
    app.middlewares.append(note)
    runner, url = await _serve(app)
    yield url, introspected
    await runner.cleanup()


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
            await asyncio.sleep(0.2)
    raise AssertionError("serve --workers 2 did not become ready")


async def test_two_workers_share_the_port_agree_on_pseudonyms_and_stop_together(
        sandbox: tuple[str, list[str]]) -> None:
    upstream, introspected = sandbox
    port = free_port()
    env = {**os.environ, "RETENTLY_API_URL": upstream, "REFINER_API_URL": upstream,
           "REFINER_AUTH_URL": upstream, "GATEWAY_SECRET_KEY": "", "GATEWAY_LOG_JSON": "true"}
    command = [str(Path(sys.executable).parent / "mcp-gateway"), "serve", "--port", str(port),
               "--workers", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,  # noqa: S603, ASYNC220 - started, not waited on
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
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
        assert len(introspected) == 2
        # ...and the first row's pseudonym was the same whichever worker answered.
        assert len(seen) == 1 and next(iter(seen)).endswith("@pseudonym.invalid")
        process.send_signal(signal.SIGTERM)
        _, logged = process.communicate(timeout=15)
        assert process.returncode == 0
        assert not any(alive(worker) for worker in workers)
        assert b"workers_without_redis" in logged
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def test_serve_refuses_a_worker_count_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.server.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--workers", "0"])
    assert exited.value.code == 2
    assert "workers" in capsys.readouterr().err


async def test_workers_stop_by_themselves_when_the_parent_is_killed(
        sandbox: tuple[str, list[str]]) -> None:
    port = free_port()
    command = [str(Path(sys.executable).parent / "mcp-gateway"), "serve", "--port", str(port),
               "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL,  # noqa: S603, ASYNC220 - started, not waited on
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        await wait_until_serving(f"http://127.0.0.1:{port}", process)
        workers = children_of(process.pid)
        process.kill()
        process.wait()
        deadline = time.monotonic() + 15
        while any(alive(w) for w in workers) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        assert not any(alive(w) for w in workers)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def test_workers_need_a_fixed_port(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.server.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--workers", "2", "--port", "0"])
    assert exited.value.code == 2
    assert "fixed port" in capsys.readouterr().err
