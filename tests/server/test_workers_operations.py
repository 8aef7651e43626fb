"""`serve --workers N` as operators run it: SIGHUP to the parent reloads the specs in every
worker, and /metrics answers the sum over the workers whichever of them is asked."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.run import free_port
from tests.faults import desk_specs
from tests.server.test_reload import EXTRA_TOOL
from tests.support import MCP_HEADERS, REPO, rpc


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[str, Path, int]]:
    """Two workers serving the desk tree (its upstream is a closed port: calls fail fast)."""
    specs = desk_specs(tmp_path / "specs", "http://127.0.0.1:9", "http://127.0.0.1:9")
    port = free_port()
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    with (tmp_path / "stderr").open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "gateway", "serve", "--specs", str(specs), "--port",
             str(port), "--workers", "2"], env={**clean, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL, stderr=stderr)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not answers(base):
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            yield base, specs, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def answers(base: str) -> bool:
    try:
        return len(get(base, "/readyz")) > 0
    except OSError:
        return False


def get(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path, timeout=10) as answer:  # noqa: S310 - loopback
        body: bytes = answer.read()
        return body


def call_tool(base: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base}/desk/mcp", data=orjson.dumps(rpc("tools/call", {
            "name": "read_item", "arguments": {}})),
        headers={**MCP_HEADERS, "Authorization": "Bearer alice",
                 "MCP-Protocol-Version": "2025-06-18", "Connection": "close"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        found: dict[str, Any] = orjson.loads(answer.read())
        return found


def digests_seen(base: str, probes: int = 20) -> set[str]:
    """The spec digests /readyz reports over a few fresh connections (spread over workers)."""
    return {orjson.loads(get(base, "/readyz"))["components"]["specs"]["digest"]
            for _ in range(probes)}


def test_sighup_to_the_parent_reloads_every_worker(
        workers: tuple[str, Path, int]) -> None:
    base, specs, parent = workers
    before = digests_seen(base)
    assert len(before) == 1
    (specs / "desk" / "extra.yaml").write_text(EXTRA_TOOL)
    os.kill(parent, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while (seen := digests_seen(base)) != seen - before or len(seen) != 1:
        assert time.monotonic() < deadline, f"still serving {seen} (before: {before})"
        time.sleep(0.2)


def test_metrics_are_summed_over_the_workers(workers: tuple[str, Path, int]) -> None:
    base, _, _ = workers
    for _ in range(12):
        assert call_tool(base)["result"]["isError"] is True  # the upstream's port is closed
    counted = set()
    for _ in range(8):  # whichever worker answers, it reports all twelve
        text = get(base, "/metrics").decode()
        found = re.findall(r'mcp_gateway_requests_total\{[^}]*tool="read_item"[^}]*\} (\S+)',
                           text)
        counted.add(sum(float(value) for value in found))  # over the outcomes
    assert counted == {12.0}
