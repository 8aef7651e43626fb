"""A catalog of 250 tools paged to the official client on loopback, in both eras: three pages
that add up to the unpaged list, and a stale cursor the client is told to drop (the SDK's
response cache, which keeps a first page for its ttlMs, then lists again from the server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from mcp import Client
from mcp.shared.exceptions import MCPError

from gateway.server.app import create_app
from gateway.server.state import SPECS
from gateway.settings import Settings
from tests.e2e.stack import MODES, mcp_client, serve_on_loopback
from tests.wide import PASSTHROUGH, URL, tool_names, wide_tree

TOKEN = "wide_caller"
"""Any token will do: the wide service passes it through with items:read."""


@asynccontextmanager
async def serving(tree: Path, page_size: int) -> AsyncIterator[tuple[web.Application, str]]:
    """A gateway serving `tree` on loopback: its app (to reload it) and its endpoint's URL."""
    app = create_app(Settings(specs_dir=tree, log_json=True, log_level="warning",
                              list_page_size=page_size))
    runner, url = await serve_on_loopback(app)
    try:
        yield app, url + URL
    finally:
        await runner.cleanup()


async def every_page(client: Client) -> list[Any]:
    pages = [await client.list_tools()]
    while pages[-1].next_cursor is not None and len(pages) < 10:
        pages.append(await client.list_tools(cursor=pages[-1].next_cursor))
    return pages


@pytest.mark.parametrize("mode", MODES)
async def test_250_tools_come_in_three_pages_that_add_up_to_the_unpaged_list(
        tmp_path: Path, mode: str) -> None:
    tree = wide_tree(tmp_path, auth=PASSTHROUGH)
    async with serving(tree, 100) as (_, paged), serving(tree, 10_000) as (_, whole):
        async with mcp_client(paged, TOKEN, mode) as client:
            pages = await every_page(client)
        async with mcp_client(whole, TOKEN, mode) as client:
            unpaged = await client.list_tools()

    assert [len(page.tools) for page in pages] == [100, 100, 50]
    assert pages[-1].next_cursor is None and unpaged.next_cursor is None
    names = [tool.name for page in pages for tool in page.tools]
    assert names == tool_names(250) and len(set(names)) == 250
    assert [t for page in pages for t in page.tools] == unpaged.tools


@pytest.mark.parametrize("mode", MODES)
async def test_a_stale_cursor_makes_the_client_list_again_from_the_start(
        tmp_path: Path, mode: str) -> None:
    tree = wide_tree(tmp_path, auth=PASSTHROUGH)
    async with serving(tree, 100) as (app, url), mcp_client(url, TOKEN, mode,
                                                            cached=True) as client:
        first = await client.list_tools()
        wide_tree(tmp_path, auth=PASSTHROUGH, first="item")  # every tool renamed
        assert await app[SPECS].reload("test") is True
        remembered = await client.list_tools()
        assert first.next_cursor is not None
        with pytest.raises(MCPError) as refused:
            await client.list_tools(cursor=first.next_cursor)
        pages = await every_page(client)

    # 2026-07-28: the first page is kept for its ttlMs; the refusal evicts it.
    assert remembered.tools[0].name == ("tool_000" if mode != "legacy" else "item_000")
    assert refused.value.code == -32602
    assert "list again without a cursor" in refused.value.error.message
    assert [tool.name for page in pages for tool in page.tools] == tool_names(250, "item")
