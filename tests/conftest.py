"""Shared fixtures: settings built directly, the gateway app under aiohttp's test client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
import respx
import structlog
from aiohttp.test_utils import TestClient

from gateway.server.app import create_app
from gateway.settings import SHIPPED_SPECS, Settings
from sandbox import FIXTURES_DIR

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]

RETENTLY_ADMIN = "rtly_mcp_pat_demoadmin_s3cr3t"
RETENTLY_ANALYST = "rtly_mcp_pat_demoanalyst_s3cr3t"
REFINER_FULL = "refiner_demo_full"
MCP_HEADERS = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def settings() -> Settings:
    return Settings(specs_dir=SHIPPED_SPECS, log_json=True, upstream_timeout_s=2.0,
                    upstream_transport="httpx")


RETENTLY_INTROSPECTION = "https://app.retently.com/api/oauth/introspect"
REFINER_INTROSPECTION = "https://app.refiner.io/api/oauth/introspect"
DEMO_TOKENS = orjson.loads((FIXTURES_DIR / "tokens.json").read_bytes())


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
def upstream() -> Iterator[respx.MockRouter]:
    """The network edge, faked: every test adds its upstream routes; token introspection of the
    demo tokens is already there. An unmatched request fails the test."""
    with respx.mock(assert_all_called=False, using="httpx") as router:
        router.post(RETENTLY_INTROSPECTION).mock(side_effect=introspection_answer)
        router.post(REFINER_INTROSPECTION).mock(side_effect=introspection_answer)
        yield router


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, settings: Settings,
                  upstream: respx.MockRouter) -> AsyncIterator[TestClient[Any, Any]]:
    yield await aiohttp_client(create_app(settings))


def rpc(method: str, params: dict[str, Any] | None = None, id_: int | str = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


def auth(token: str) -> dict[str, str]:
    return {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
