"""Live spec reload: SIGHUP or a changed file replaces the served tree whole, only with a valid
tree; calls in flight finish on the tree they started with; a broken tree leaves the last good
one serving and says why, file:line; /readyz shows the tree's digest and the last reload."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from bench.run import free_port
from gateway.server.app import create_app
from gateway.server.state import SPECS
from gateway.settings import Settings
from tests.faults import DESK_TOOLS, FaultServer, desk_specs, json_answer, running, slow
from tests.support import MCP_HEADERS, AiohttpClient, first_line, rpc, start_serve

EXTRA_TOOL = """\
tools:
  - name: read_extra
    kind: read
    description: A tool added while the gateway runs.
    scopes: [items]
    request: {method: GET, path: /extra}
"""


@pytest.fixture
async def upstream() -> AsyncIterator[FaultServer]:
    async with running(FaultServer()) as server:
        yield server


async def post(client: TestClient[Any, Any], method: str, params: dict[str, Any] | None = None,
               ) -> tuple[int, Any, Any]:
    answer = await client.post("/desk/mcp", json=rpc(method, params),
                               headers={**MCP_HEADERS, "Authorization": "Bearer alice"})
    return answer.status, await answer.json(), answer.headers


async def tool_names(client: TestClient[Any, Any]) -> set[str]:
    _, body, _ = await post(client, "tools/list")
    return {tool["name"] for tool in body["result"]["tools"]}


def retitled(n: int) -> str:
    return DESK_TOOLS.replace("Read the item.", f"Read the item (version {n}).")


async def test_twelve_reloads_under_load_fail_no_call(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer) -> None:
    specs = desk_specs(tmp_path, upstream.url, upstream.url)
    client = await aiohttp_client(create_app(Settings(specs_dir=specs, log_json=True,
                                                      access_log=False)))
    live = client.app[SPECS]
    outcomes: list[bool] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            status, body, _ = await post(client, "tools/call",
                                         {"name": "read_item", "arguments": {}})
            outcomes.append(status == 200 and body["result"]["isError"] is False)
            status, body, _ = await post(client, "tools/list")
            outcomes.append(status == 200 and "read_item" in str(body["result"]))

    digests = {live.current.digest}
    workers = [asyncio.create_task(load()) for _ in range(8)]
    started = time.monotonic()
    for n in range(12):
        await asyncio.sleep(8 / 12)
        (specs / "desk" / "tools.yaml").write_text(retitled(n))
        os.kill(os.getpid(), signal.SIGHUP)  # the real signal, handled by the app's loop
        deadline = time.monotonic() + 10
        while live.reloads["accepted"] <= n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        digests.add(live.current.digest)
    stop.set()
    await asyncio.gather(*workers)
    print(f"reloads {live.reloads}, {len(digests)} trees, {len(outcomes)} calls, "
          f"{outcomes.count(False)} failed, {time.monotonic() - started:.1f} s")
    assert live.reloads == {"accepted": 12, "refused": 0}
    assert len(digests) == 13  # the first tree, then a new one at each reload
    assert len(outcomes) > 200 and all(outcomes), outcomes.count(False)


async def test_a_broken_tree_is_refused_with_its_problems_and_the_old_one_keeps_serving(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer) -> None:
    specs = desk_specs(tmp_path, upstream.url, upstream.url)
    client = await aiohttp_client(create_app(Settings(specs_dir=specs, log_json=True)))
    live = client.app[SPECS]
    serving = live.current.digest
    (specs / "desk" / "broken.yaml").write_text("tools:\n  - name: broken\n    kind: nonsense\n")
    with capture_logs() as events:
        assert await live.reload("test") is False
    refused = [e for e in events if e["event"] == "specs_refused"]
    assert len(refused) == 1 and refused[0]["serving"] == serving
    assert any("broken.yaml:3" in problem for problem in refused[0]["problems"])
    assert live.current.digest == serving
    _, body, _ = await post(client, "tools/call", {"name": "read_item", "arguments": {}})
    assert body["result"]["isError"] is False
    ready = await (await client.get("/readyz")).json()
    assert ready["components"]["specs"]["digest"] == serving
    assert ready["components"]["specs"]["last_reload"]["outcome"] == "refused"


async def test_a_call_in_flight_finishes_on_the_tree_it_started_with(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer) -> None:
    upstream.plan("/item", slow(0.5, json_answer({"id": "old tree"})))
    specs = desk_specs(tmp_path, upstream.url, upstream.url)
    client = await aiohttp_client(create_app(Settings(specs_dir=specs, log_json=True)))
    in_flight = asyncio.create_task(post(client, "tools/call",
                                         {"name": "read_item", "arguments": {}}))
    await asyncio.sleep(0.1)
    (specs / "desk" / "tools.yaml").write_text(EXTRA_TOOL)  # read_item is gone
    assert await client.app[SPECS].reload("test") is True
    _, body, _ = await in_flight
    assert body["result"]["structuredContent"] == {"id": "old tree"}
    assert await tool_names(client) == {"read_extra"}


async def test_the_list_etag_changes_exactly_when_the_catalog_does(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer) -> None:
    specs = desk_specs(tmp_path, upstream.url, upstream.url)
    client = await aiohttp_client(create_app(Settings(specs_dir=specs, log_json=True)))
    first = (await post(client, "tools/list"))[2]["ETag"]
    (specs / "other" / "tools.yaml").write_text(retitled(1))  # another service's catalog
    await client.app[SPECS].reload("test")
    assert (await post(client, "tools/list"))[2]["ETag"] == first
    (specs / "desk" / "tools.yaml").write_text(retitled(1))
    await client.app[SPECS].reload("test")
    assert (await post(client, "tools/list"))[2]["ETag"] != first


async def test_a_new_tool_file_is_listed_without_a_restart_when_watching(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer) -> None:
    specs = desk_specs(tmp_path, upstream.url, upstream.url)
    client = await aiohttp_client(create_app(Settings(specs_dir=specs, log_json=True,
                                                      specs_watch=True)))
    await asyncio.sleep(0.3)  # the watcher is up
    (specs / "desk" / "extra.yaml").write_text(EXTRA_TOOL)
    deadline = time.monotonic() + 10
    while "read_extra" not in await tool_names(client) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert "read_extra" in await tool_names(client)
    assert client.app[SPECS].last_reload == {**(client.app[SPECS].last_reload or {}),
                                            "outcome": "accepted", "reason": "files changed"}


def test_serve_reloads_on_sighup(tmp_path: Path) -> None:
    """The command as an operator runs it: a new tool file, `kill -HUP`, and it is listed."""
    specs = desk_specs(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    port = free_port()
    process = start_serve(specs, port)
    try:
        assert "mcp-gateway" in first_line(process)
        base = f"http://127.0.0.1:{port}"
        digest = readyz(base)["components"]["specs"]["digest"]
        (specs / "desk" / "extra.yaml").write_text(EXTRA_TOOL)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while readyz(base)["components"]["specs"]["digest"] == digest:
            assert time.monotonic() < deadline, "no reload within 10 s"
            time.sleep(0.1)
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{base}/desk/mcp", data=orjson.dumps(rpc("tools/list")),
            headers={**MCP_HEADERS, "Authorization": "Bearer alice",
                     "MCP-Protocol-Version": "2025-06-18"})
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            listed = {t["name"] for t in orjson.loads(answer.read())["result"]["tools"]}
        assert "read_extra" in listed
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=20)
    assert "specs_reloaded" in errors


def readyz(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/readyz", timeout=10) as answer:  # noqa: S310
        found: dict[str, Any] = orjson.loads(answer.read())
        return found


async def test_a_tree_mounted_as_kubernetes_mounts_a_configmap_reloads_when_it_is_swapped(
        aiohttp_client: AiohttpClient, tmp_path: Path, upstream: FaultServer) -> None:
    """A ConfigMap volume: the visible folders are links into `..data`, itself a link to a
    timestamped folder that an update replaces whole."""
    mount = tmp_path / "specs"
    mount.mkdir()
    first = desk_specs(tmp_path / "..2026_12_04_one", upstream.url, upstream.url)
    (mount / "..2026_12_04_one").symlink_to(first)
    (mount / "..data").symlink_to("..2026_12_04_one")
    for service in ("desk", "other"):
        (mount / service).symlink_to(f"..data/{service}")
    client = await aiohttp_client(create_app(Settings(specs_dir=mount, log_json=True)))
    live = client.app[SPECS]
    second = desk_specs(tmp_path / "..2026_12_04_two", upstream.url, upstream.url)
    (second / "desk" / "extra.yaml").write_text(EXTRA_TOOL)
    (mount / "..2026_12_04_two").symlink_to(second)
    (mount / "..data_tmp").symlink_to("..2026_12_04_two")
    (mount / "..data_tmp").rename(mount / "..data")  # the atomic swap kubelet makes
    before = live.current.digest
    assert await live.reload("test") is True
    assert live.current.digest != before
    assert "read_extra" in await tool_names(client)
