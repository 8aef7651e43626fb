"""What the caller sends is never forwarded on trust: a malformed or oversized `traceparent`
is dropped, and an integer argument sent as 1.0 reaches the upstream as 1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from aiohttp.test_utils import TestClient

from gateway.calls.context import valid_traceparent
from gateway.server.app import create_app
from gateway.settings import Settings
from tests.support import MCP_HEADERS, AiohttpClient, rpc

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TOOLS = """
tools:
  - name: list_items
    kind: read
    description: Items, a page at a time.
    input:
      limit: {type: integer, minimum: 1, maximum: 100}
      ids: {type: array, items: {type: integer}}
    request: {method: GET, path: /items, query: {limit: '{limit}', ids: '{ids}'}}
"""


@pytest.fixture
async def desk(aiohttp_client: AiohttpClient, tmp_path: Path
               ) -> AsyncIterator[tuple[TestClient[Any, Any], respx.Route]]:
    folder = tmp_path / "desk"
    folder.mkdir()
    (folder / "service.yaml").write_text(
        "name: desk\ntitle: Desk\nendpoint: /desk/mcp\nupstream: {base_url: https://desk.test}\n"
        "auth: {required: false}\n")
    (folder / "tools.yaml").write_text(TOOLS)
    with respx.mock(using="httpx", assert_all_called=False) as router:
        route = router.get("https://desk.test/items").mock(
            return_value=httpx.Response(200, json={"items": []}))
        yield (await aiohttp_client(create_app(Settings(
            specs_dir=tmp_path, log_json=True, upstream_transport="httpx")))), route


async def test_integer_arguments_sent_as_floats_reach_the_upstream_as_integers(
        desk: tuple[TestClient[Any, Any], respx.Route]) -> None:
    gateway, route = desk

    answer = await gateway.post("/desk/mcp", headers=MCP_HEADERS, json=rpc(
        "tools/call", {"name": "list_items", "arguments": {"limit": 1.0, "ids": [2.0, 3]}}))

    assert (await answer.json())["result"]["isError"] is False
    assert route.calls.last.request.url.params.get_list("limit") == ["1"]
    assert route.calls.last.request.url.params.get_list("ids") == ["2", "3"]


@pytest.mark.parametrize(("sent", "forwarded"), [
    (VALID, VALID),
    (VALID + "-extra", None),                                              # oversized
    ("ff" + VALID[2:], None),                                              # version ff
    ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", None),                     # all-zero trace id
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", None),     # all-zero parent
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None),     # upper case
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\n", None),    # a line break
])
async def test_only_a_well_formed_traceparent_is_carried_upstream(
        desk: tuple[TestClient[Any, Any], respx.Route], sent: str, forwarded: str | None
        ) -> None:
    gateway, route = desk
    assert valid_traceparent(sent) == forwarded
    if "\n" in sent:
        return  # an HTTP client would refuse to send it at all

    await gateway.post("/desk/mcp", headers={**MCP_HEADERS, "traceparent": sent},
                       json=rpc("tools/call", {"name": "list_items", "arguments": {}}))

    assert route.calls.last.request.headers.get("traceparent") == forwarded
