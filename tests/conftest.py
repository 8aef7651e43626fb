"""Shared fixtures: settings built directly, the gateway app under aiohttp's test client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import SHIPPED_SPECS, Settings

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
    return Settings(specs_dir=SHIPPED_SPECS, log_json=True, upstream_timeout_s=2.0)


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    yield await aiohttp_client(create_app(settings))


def rpc(method: str, params: dict[str, Any] | None = None, id_: int | str = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


def auth(token: str) -> dict[str, str]:
    return {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
