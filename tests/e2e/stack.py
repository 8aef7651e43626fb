"""The whole stack on loopback for end-to-end tests: the sandbox upstream and the gateway as real
servers on free ports, and the official `mcp` SDK client connected to them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from aiohttp import web
from mcp import Client
from mcp.client import CacheConfig
from mcp.client.session import ElicitationFnT
from mcp.client.streamable_http import streamable_http_client

from gateway.server.app import create_app
from gateway.server.connections import Serving, start_serving
from gateway.server.listen import bound_port, listen
from gateway.server.state import SETTINGS
from gateway.settings import SHIPPED_SPECS, Settings
from gateway.spec.loader import load_tree
from gateway.telemetry.metrics import LANE_ERRORS, REQUESTS
from sandbox import create_sandbox_app

MODES = ("legacy", "2026-07-28")
"""The two protocol eras: the initialize handshake, and the per-request envelope."""


@dataclass(frozen=True)
class Stack:
    gateway_url: str
    sandbox_url: str

    def endpoint(self, service: str) -> str:
        return f"{self.gateway_url}/{service}/mcp"


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve `app` on a free loopback port: its runner (to clean up) and its URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site.port}"


def internal_errors() -> float:
    """Requests this process's gateways answered with an internal error, either path."""
    return sum(sample.value for counter in (REQUESTS, LANE_ERRORS)
               for metric in counter.collect() for sample in metric.samples
               if sample.name.endswith("_total")
               and sample.labels.get("outcome", "internal_error") == "internal_error")


async def serve_gateway(app: web.Application) -> tuple[Serving, str]:
    """Serve the gateway's `app` on a free loopback port as `serve` does (through the fast
    lane unless its settings turn it off): how it is served, and its URL."""
    sockets = listen("127.0.0.1", 0)
    serving = await start_serving(app, sockets, max_connections=1024, access_log=False,
                                  fast_lane=app[SETTINGS].fast_lane)
    return serving, f"http://127.0.0.1:{bound_port(sockets)}"


@asynccontextmanager
async def running_stack(*, sandbox_page_size: int | None = None,
                        **settings: Any) -> AsyncIterator[Stack]:
    """`sandbox_page_size` caps the sandbox's pages (its `max_page_size`), so paged tools read
    several pages of the fixtures; `settings` are the gateway's."""
    sandbox_runner, sandbox_url = await serve_on_loopback(
        create_sandbox_app(max_page_size=sandbox_page_size))
    try:
        registry = load_tree(SHIPPED_SPECS, {"RETENTLY_API_URL": sandbox_url,
                                             "REFINER_API_URL": sandbox_url,
                                             "REFINER_AUTH_URL": sandbox_url})
        gateway_settings = Settings(log_json=True, log_level="warning", **settings)
        serving, gateway_url = await serve_gateway(create_app(gateway_settings, registry))
        before = internal_errors()
        try:
            yield Stack(gateway_url, sandbox_url)
        finally:
            await serving.stop()
        # A client need not fail on an error answer (the Python SDK's does not, to a
        # notification): the gateway's own count says whether anything was answered by a bug.
        assert internal_errors() == before, "the gateway answered a request with an internal error"
    finally:
        await sandbox_runner.cleanup()


@asynccontextmanager
async def mcp_client(url: str, token: str | None, mode: str,
                     elicitation: ElicitationFnT | None = None, *,
                     cached: bool = False) -> AsyncIterator[Client]:
    """The SDK client; with `elicitation` it declares the capability and answers with it, and
    `cached` keeps list answers as long as their caching hints allow (2026-07-28)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode,
                          cache=CacheConfig() if cached else None,
                          elicitation_callback=elicitation) as client:
            yield client
