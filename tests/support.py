"""What many test modules share: requests to the MCP endpoint, a hand-moved clock, spec trees in
tmp_path, and the gateway app over an in-memory wire whose upstream is a respx router.

The wire is the gateway's own request path with only the network replaced: each exchange becomes
an `httpx.Request` for the router, and its `httpx.Response` (or the httpx error a side effect
raises) comes back the way the real clients report it.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, settings
from respx.models import AllMockedAssertionError

from gateway.errors import SpecError, SpecProblem, WireError
from gateway.server.app import create_app, utc_now
from gateway.settings import Settings
from gateway.spec.compiled import Registry
from gateway.spec.loader import load_tree
from gateway.upstream.mock_wire import Exchange, MockWire
from gateway.upstream.wire import Answer

REPO = Path(__file__).resolve().parent.parent
"""The checkout: where bench/, conformance/ and .node/ are."""

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
"""`make check-all` sets it: every property test then tries five times as many examples."""


def properties(examples: int, *also_suppressed: HealthCheck) -> settings:
    """A property test's settings: `examples` generated cases in `make test`, five times as many
    in `make check-all`; the same cases on every run (derandomised, no database), so a failure
    reproduces; and no timing in the verdict (no deadline, no complaint that generating nested
    documents is slow on a busy machine)."""
    return settings(max_examples=examples * (5 if THOROUGH else 1), derandomize=True,
                    deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, *also_suppressed])


def unmeasured_environment() -> dict[str, str]:
    """Ours without the coverage hand-off, for processes started to load the gateway (the
    benchmark's smoke run, the soak): the code they run is measured by the tests that call it
    directly, and tracing every line of thousands of calls doubled their time."""
    return {k: v for k, v in os.environ.items()
            if k not in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")}


AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]

UPSTREAM_CLIENTS: dict[str, dict[str, Any]] = {
    "aiohttp lane": {"upstream_transport": "aiohttp"},
    "aiohttp client": {"upstream_transport": "aiohttp", "upstream_fast_lane": False},
    "httpx": {"upstream_transport": "httpx"},
}
"""The settings of each way to the upstream: the fast lane (the default, for plain http), aiohttp's
client objects (TLS, and the lane switched off), and httpx."""
RETENTLY_ADMIN = "rtly_mcp_pat_demoadmin_s3cr3t"
RETENTLY_ANALYST = "rtly_mcp_pat_demoanalyst_s3cr3t"
REFINER_FULL = "refiner_demo_full"
MCP_HEADERS = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}


def rpc(method: str, params: dict[str, Any] | None = None, id_: int | str = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


def auth(token: str) -> dict[str, str]:
    return {**MCP_HEADERS, "Authorization": f"Bearer {token}"}


class Clock:
    """The injected clock: it moves only when a test says so."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    """Write files (paths relative to root, text dedented) and return root."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def service_tree(root: Path, name: str, service: str, tools: str) -> Path:
    """A spec tree of one service, `<root>/<name>/` holding service.yaml and tools.yaml."""
    return write_tree(root, {f"{name}/service.yaml": service, f"{name}/tools.yaml": tools})


class RouterUpstream:
    """A MockWire handler that asks a respx router for each answer.

    A request no route matches fails its exchange and is kept in `unmatched`, so the fixture that
    owns the router can fail the test that made it.
    """

    def __init__(self, router: respx.Router) -> None:
        self.router = router
        self.unmatched: list[httpx.Request] = []

    async def __call__(self, exchange: Exchange) -> Answer:
        request = httpx.Request(exchange.method, exchange.url, headers=dict(exchange.headers),
                                content=exchange.body)
        try:
            response = await self.router.async_handler(request)
            body = await response.aread()
        except AllMockedAssertionError:
            self.unmatched.append(request)
            raise
        except httpx.TimeoutException as exc:
            raise WireError("timeout", type(exc).__name__) from exc
        except httpx.ConnectError as exc:
            raise WireError("connect", type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise WireError("broken", type(exc).__name__) from exc
        return Answer(response.status_code, response.headers, body)


def gateway_app(wire: MockWire, registry: Registry | None = None, *,
                clock: Callable[[], datetime] = utc_now, **settings: Any) -> web.Application:
    """The gateway over `wire`, with default settings (JSON logs) but for `settings`. Without a
    registry it loads `specs_dir`, the shipped tree unless given."""
    return create_app(Settings(log_json=True, **settings), registry, clock=clock, wire=wire)


def first_line(process: subprocess.Popen[str], timeout_s: float = 60) -> str:
    """The first line a started command prints (without its newline), waited for at most
    `timeout_s`."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready, f"no output within {timeout_s} s"
    return process.stdout.readline().rstrip("\n")


def start_serve(specs: Path, port: int) -> subprocess.Popen[str]:
    """`mcp-gateway serve` over `specs` on loopback `port`, with JSON logs and none of the
    environment's GATEWAY_* settings; its output piped (read its first line to know it serves)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "gateway", "serve", "--specs", str(specs), "--port", str(port)],
        env={**clean, "GATEWAY_LOG_JSON": "true"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def introspection_of(tokens: Mapping[str, Mapping[str, Any]], expires: int
                     ) -> Callable[[httpx.Request], httpx.Response]:
    """An authorization server's introspection endpoint (for respx) that knows `tokens`: each
    active until `expires` with its claims; any other token inactive."""
    def answer(request: httpx.Request) -> httpx.Response:
        token = parse_qs(request.content.decode()).get("token", [""])[0]
        known = tokens.get(token)
        if known is None:
            return httpx.Response(200, json={"active": False})
        return httpx.Response(200, json={"active": True, "exp": expires, **known})
    return answer


def only_problem(root: Path, files: Mapping[str, str]) -> SpecProblem:
    """The one problem the loader reports for the spec tree `files` (written under `root`)."""
    write_tree(root, files)
    with pytest.raises(SpecError) as caught:
        load_tree(root, {})
    (problem,) = caught.value.problems
    return problem

