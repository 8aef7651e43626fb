"""Shared fixtures: settings built directly, the gateway app under aiohttp's test client, and the
upstream network faked by a respx router behind an in-memory wire."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
import respx
import structlog
from aiohttp.test_utils import TestClient

from gateway import native
from gateway.server.app import create_app
from gateway.settings import SHIPPED_SPECS, Settings
from gateway.upstream.mock_wire import MockWire
from sandbox import FIXTURES_DIR
from tests.support import AiohttpClient, RouterUpstream

RETENTLY_INTROSPECTION = "https://app.retently.com/api/oauth/introspect"
REFINER_INTROSPECTION = "https://app.refiner.io/api/oauth/introspect"
DEMO_TOKENS = orjson.loads((FIXTURES_DIR / "tokens.json").read_bytes())


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(params=["c", "python"])
def row_loops(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test once with the compiled row loops (gateway/native) and once with their
    pure-Python twins: a module opts in with `pytestmark = pytest.mark.usefixtures("row_loops")`.
    Without the extension (no compiler at install) the compiled run reports a skip, and
    tests/native/test_build.py fails where a compiler was at hand."""
    if request.param == "c" and not native.built():
        pytest.skip("the C row loops are not built in this install")
    before = native.rows() is not None
    native.use_native(request.param == "c")
    yield request.param
    native.use_native(before)


@pytest.fixture
def settings() -> Settings:
    """The defaults a deployment gets (the default upstream client included), over the shipped
    spec tree."""
    return Settings(specs_dir=SHIPPED_SPECS, log_json=True, upstream_timeout_s=2.0)


def introspection_answer(request: httpx.Request) -> httpx.Response:
    """What the authorization server says of a demo token (the sandbox's own table)."""
    token = parse_qs(request.content.decode()).get("token", [""])[0]
    known = DEMO_TOKENS["retently"].get(token) or DEMO_TOKENS["refiner"].get(token)
    if (known is None or known.get("revoked") or known["exp"] < 2_000_000_000
            or known.get("kind", "oauth") != "oauth"):
        return httpx.Response(200, json={"active": False})
    claims = {"active": True, "scope": known["scope"], "sub": known["sub"],
              "exp": known["exp"], "aud": known["aud"]}
    if "account_id" in known:
        claims["account_id"] = known["account_id"]
    if "projects" in known:
        claims["project_uuids"] = known["projects"]
    return httpx.Response(200, json=claims)


@pytest.fixture
def router() -> respx.MockRouter:
    """The network edge, faked: every test adds its upstream routes; token introspection of the
    demo tokens is already there. Nothing is patched: the `wire` fixture asks this router."""
    router = respx.MockRouter(assert_all_called=False)
    router.post(RETENTLY_INTROSPECTION).mock(side_effect=introspection_answer)
    router.post(REFINER_INTROSPECTION).mock(side_effect=introspection_answer)
    return router


@pytest.fixture
def upstream(router: respx.MockRouter) -> respx.MockRouter:
    """The router, by the name the tests of the shipped services use for it."""
    return router


@pytest.fixture
def wire(router: respx.MockRouter) -> Iterator[MockWire]:
    """The gateway's upstream wire, in memory and answered by `router`. A request that no route
    answers fails the test."""
    answers = RouterUpstream(router)
    yield MockWire(answers)
    assert answers.unmatched == [], f"no route answered {answers.unmatched}"


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, settings: Settings,
                  wire: MockWire) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(settings, wire=wire))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at its end is killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
