"""Paged lists at the MCP endpoint: each list method answers pages of GATEWAY_LIST_PAGE_SIZE
entries in catalog order, in both eras; a cursor continues only the list it was given for (the
same method, catalog and scopes), on any replica serving the same tree; any other cursor is a
-32602 error telling the client to list again from the start."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import respx
from aiohttp.test_utils import TestClient
from pydantic import ValidationError

from gateway.protocol.paging import decode_cursor, encode_cursor
from gateway.server.state import SPECS
from gateway.settings import Settings
from gateway.upstream.mock_wire import MockWire
from tests.support import (
    MCP_HEADERS,
    RETENTLY_ADMIN,
    AiohttpClient,
    gateway_app,
    introspection_of,
    rpc,
)
from tests.wide import ADMIN, INTROSPECT, READER, TOKENS, URL, tool_names, wide_tree

PAGE = 100
MODERN = "2026-07-28"
ERAS = ("legacy", "modern")
KEYS = {"tools/list": "tools", "prompts/list": "prompts", "resources/list": "resources",
        "resources/templates/list": "resourceTemplates"}
"""Each list method and the key of its entries in a result."""
EXPECTED = {
    "tools/list": [*tool_names(250), *(f"admin_{i:03d}" for i in range(10))],
    "prompts/list": [f"prompt_{i:03d}" for i in range(120)],
    "resources/list": [f"item_{i:03d}" for i in range(110)],
    "resources/templates/list": [f"thing_{i:03d}" for i in range(105)],
}
"""What the admin lists, in the catalog's order."""

Client = TestClient[Any, Any]


def message(method: str, params: dict[str, Any], era: str, id_: int = 1) -> dict[str, Any]:
    if era == "modern":
        params = {**params, "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}}
    return rpc(method, params, id_)


def headers(token: str, method: str, era: str) -> dict[str, str]:
    sent = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    if era == "modern":
        sent.update({"MCP-Protocol-Version": MODERN, "Mcp-Method": method})
    return sent


async def post(client: Client, method: str, era: str, *, token: str = ADMIN,
               params: dict[str, Any] | None = None, url: str = URL) -> tuple[int, Any, str]:
    answer = await client.post(url, json=message(method, params or {}, era),
                               headers=headers(token, method, era))
    text = await answer.text()
    return answer.status, await answer.json(), text


async def walk(client: Client, method: str, era: str, token: str = ADMIN) -> list[Any]:
    """Every page of a list, following nextCursor from the first."""
    pages = []
    params: dict[str, Any] = {}
    while True:
        status, body, _ = await post(client, method, era, token=token, params=params)
        assert status == 200, body
        pages.append(body["result"])
        if "nextCursor" not in body["result"]:
            return pages
        params = {"cursor": body["result"]["nextCursor"]}
        assert len(pages) < 10


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return wide_tree(tmp_path / "specs", admin_tools=10, prompts=120, resources=110,
                     templates=105)


@pytest.fixture
def serving(aiohttp_client: AiohttpClient, router: respx.MockRouter, wire: MockWire,
            tree: Path) -> Callable[..., Any]:
    """Start a gateway over the wide tree (another replica each time), with some settings."""
    router.post(INTROSPECT).mock(side_effect=introspection_of(TOKENS, 4_000_000_000))

    async def start(**settings: Any) -> Client:
        return await aiohttp_client(gateway_app(wire, specs_dir=tree, **settings))

    return start


@pytest.fixture
async def client(serving: Callable[..., Any]) -> Client:
    started: Client = await serving(list_page_size=PAGE)
    return started


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("method", "sizes"), [
    ("tools/list", [100, 100, 60]), ("prompts/list", [100, 20]),
    ("resources/list", [100, 10]), ("resources/templates/list", [100, 5])])
async def test_each_list_comes_in_pages_of_the_page_size_in_catalog_order(
        client: Client, serving: Callable[..., Any], method: str, sizes: list[int],
        era: str) -> None:
    unpaged = await serving(list_page_size=10_000)
    pages = await walk(client, method, era)
    (whole,) = await walk(unpaged, method, era)

    key = KEYS[method]
    assert [len(page[key]) for page in pages] == sizes
    assert [e["name"] for page in pages for e in page[key]] == EXPECTED[method]
    assert [e for page in pages for e in page[key]] == whole[key]
    assert ["nextCursor" in page for page in pages] == [True] * (len(sizes) - 1) + [False]
    if era == "modern":  # every page carries the same caching hints, as the spec asks
        assert {(p["resultType"], p["ttlMs"], p["cacheScope"]) for p in pages} == {
            ("complete", 60_000, "private")}


async def test_a_cursor_continues_the_list_on_another_replica_serving_the_same_tree(
        client: Client, serving: Callable[..., Any]) -> None:
    other = await serving(list_page_size=PAGE)
    _, first, _ = await post(client, "tools/list", "legacy")
    cursor = {"cursor": first["result"]["nextCursor"]}

    _, here, _ = await post(client, "tools/list", "legacy", params=cursor)
    _, there, _ = await post(other, "tools/list", "modern", params=cursor)

    assert there["result"]["tools"] == here["result"]["tools"]
    assert there["result"]["nextCursor"] == here["result"]["nextCursor"]


def past_the_end(cursor: str) -> str:
    """The cursor, its offset moved past the end of its list."""
    decoded = decode_cursor(cursor)
    assert decoded is not None
    return encode_cursor(decoded._replace(offset=10_000))


def retagged(cursor: str) -> str:
    """The cursor, saying it continues a list method there is none of."""
    raw = base64.urlsafe_b64decode(cursor + "==")
    return base64.urlsafe_b64encode(bytes([99]) + raw[1:]).rstrip(b"=").decode()


BAD_CURSORS: list[tuple[str, str, str, Callable[[str], Any], str | None]] = [
    ("garbage", "tools/list", ADMIN, lambda _: "not a cursor!", "malformed"),
    ("empty", "tools/list", ADMIN, lambda _: "", "malformed"),
    ("truncated", "tools/list", ADMIN, lambda c: c[:-1], "malformed"),
    ("padded", "tools/list", ADMIN, lambda c: c + "==", "malformed"),
    ("not base64", "tools/list", ADMIN, lambda _: "abcd*fghijklmnopqr", "malformed"),
    ("no base64 at all", "tools/list", ADMIN, lambda _: "*" * 18, "malformed"),
    ("not ascii", "tools/list", ADMIN, lambda _: "\u00e9" * 18, "malformed"),
    ("with bits past its end", "tools/list", ADMIN, lambda c: c[:-1] + chr(ord(c[-1]) + 1),
     "malformed"),
    ("of no list method", "tools/list", ADMIN, retagged, "malformed"),
    ("past the end", "tools/list", ADMIN, past_the_end, "out_of_range"),
    ("of tools/list on prompts/list", "prompts/list", ADMIN, lambda c: c, "other_list"),
    ("made for more scopes", "tools/list", READER, lambda c: c, "list_changed"),
    ("a number", "tools/list", ADMIN, lambda _: 100, None),
    ("a list", "tools/list", ADMIN, lambda c: [c], None),
]
"""(case, the method it is sent to, by whom, the cursor made of a real tools/list cursor of the
admin's, the refusal's reason; None where the envelope refuses a cursor that is no string)."""


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("method", "token", "made", "reason"),
                         [case[1:] for case in BAD_CURSORS],
                         ids=[case[0] for case in BAD_CURSORS])
async def test_a_cursor_that_does_not_continue_the_callers_list_is_invalid_params(
        client: Client, method: str, token: str, made: Callable[[str], Any],
        reason: str | None, era: str) -> None:
    _, first, _ = await post(client, "tools/list", era)

    status, body, text = await post(client, method, era, token=token,
                                    params={"cursor": made(first["result"]["nextCursor"])})

    assert status == (400 if era == "modern" else 200)
    assert body["id"] == 1 and body["error"]["code"] == -32602
    assert "Traceback" not in text
    if reason is None:
        assert any(p.startswith("cursor") for p in body["error"]["data"]["problems"])
    else:
        assert body["error"]["data"] == {"reason": reason}
        assert body["error"]["message"].endswith("list again without a cursor")


@pytest.mark.parametrize("era", ERAS)
async def test_a_cursor_given_before_the_catalog_changed_is_invalid_params(
        client: Client, tree: Path, era: str) -> None:
    _, first, _ = await post(client, "tools/list", era)
    wide_tree(tree, tools=251, admin_tools=10, prompts=120, resources=110, templates=105)
    assert await client.app[SPECS].reload("test") is True

    status, body, _ = await post(client, "tools/list", era,
                                 params={"cursor": first["result"]["nextCursor"]})
    again = await walk(client, "tools/list", era)

    assert status == (400 if era == "modern" else 200)
    assert body["error"]["code"] == -32602
    assert body["error"]["data"] == {"reason": "list_changed"}
    assert sum(len(page["tools"]) for page in again) == 261


async def test_a_reload_that_leaves_the_names_as_they_were_keeps_cursors_valid(
        client: Client, tree: Path) -> None:
    _, first, _ = await post(client, "tools/list", "legacy")
    tools = tree / "wide" / "tools.yaml"
    tools.write_text(tools.read_text().replace('"Read tool_000."', '"Read the first tool."'))
    assert await client.app[SPECS].reload("test") is True

    status, body, _ = await post(client, "tools/list", "legacy",
                                 params={"cursor": first["result"]["nextCursor"]})

    assert status == 200 and len(body["result"]["tools"]) == PAGE


@pytest.mark.parametrize("era", ERAS)
async def test_the_default_page_size_lists_every_retently_tool_in_one_answer(
        gateway: Client, era: str) -> None:
    status, body, _ = await post(gateway, "tools/list", era, token=RETENTLY_ADMIN,
                                 url="/retently/mcp")

    assert status == 200
    assert len(body["result"]["tools"]) == 53 and "nextCursor" not in body["result"]


def test_the_page_size_is_one_hundred_unless_set_within_its_bounds() -> None:
    assert Settings().list_page_size == 100
    assert Settings(list_page_size=1).list_page_size == 1
    for refused in (0, 10_001):
        with pytest.raises(ValidationError, match="list_page_size"):
            Settings(list_page_size=refused)
