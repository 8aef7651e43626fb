"""Virtual servers: /retently/readonly/mcp serves the read tools of Retently only, with the same
upstream, auth and PII policy (scopes still filter), found by a real MCP client in both eras."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from gateway.errors import SpecError
from gateway.spec.loader import load_tree
from tests.e2e.stack import MODES, Stack, mcp_client, running_stack
from tests.support import RETENTLY_ADMIN, RETENTLY_ANALYST, service_tree

READONLY = "/retently/readonly/mcp"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack() as running:
        yield running


@pytest.mark.parametrize("mode", MODES)
async def test_the_read_only_endpoint_lists_and_runs_reads_and_knows_no_write(
        stack: Stack, mode: str) -> None:
    async with mcp_client(stack.gateway_url + READONLY, RETENTLY_ADMIN, mode) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        feedback = await client.call_tool("list_feedback", {"limit": 1})
        with pytest.raises(MCPError, match="tag_feedback"):
            await client.call_tool("tag_feedback", {"id": "5a9d595701c85b37224ab2d0",
                                                    "add": ["x"]})
    assert len(listed) == 44 and "ping" in listed and "list_feedback" in listed
    assert not {"tag_feedback", "add_note", "send_survey", "update_contact"} & set(listed)
    assert all(tool.annotations is None or tool.annotations.read_only_hint is not False
               for tool in listed.values())
    assert feedback.is_error is False


async def test_scopes_still_filter_a_virtual_server_and_pii_is_still_redacted(
        stack: Stack) -> None:
    async with mcp_client(stack.gateway_url + READONLY, RETENTLY_ANALYST, "legacy") as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        customers = (await client.call_tool("list_customers", {"limit": 5})).structured_content
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ANALYST, "legacy") as client:
        reads_on_main = {tool.name for tool in (await client.list_tools()).tools
                         if tool.annotations is None or tool.annotations.read_only_hint}
    assert listed <= reads_on_main | {"ping"}
    assert "list_suppressed_emails" not in listed  # needs pii:read
    assert customers is not None and customers["items"]
    assert all(c["email"].endswith("@pseudonym.invalid") for c in customers["items"])


async def test_a_virtual_server_has_its_own_protected_resource_metadata(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        found = await http.get(f"{stack.gateway_url}/.well-known/oauth-protected-resource"
                               f"{READONLY}")
    assert found.status_code == 200
    assert found.json()["resource"].endswith(READONLY)


def test_a_virtual_server_selecting_what_the_service_lacks_is_refused(tmp_path: Path) -> None:
    service = """\
        name: desk
        title: Desk
        endpoint: /desk/mcp
        endpoints:
          - path: /desk/lite/mcp
            include: [read_item, read_nothing, 'tag:nope']
        upstream: {base_url: 'http://127.0.0.1:9'}
        """
    tools = """\
        tools:
          - {name: read_item, kind: read, description: Read., request: {path: /item}}
        """
    with pytest.raises(SpecError) as refused:
        load_tree(service_tree(tmp_path, "desk", service, tools), {})
    problems = [str(p) for p in refused.value.problems]
    assert len(problems) == 2
    assert all("service.yaml:6" in p for p in problems)
    assert "'read_nothing' names nothing" in problems[0] and "'tag:nope'" in problems[1]


def test_a_virtual_server_path_may_not_take_another_endpoint(tmp_path: Path) -> None:
    service = """\
        name: desk
        title: Desk
        endpoint: /desk/mcp
        endpoints: [{path: /desk/mcp}]
        upstream: {base_url: 'http://127.0.0.1:9'}
        """
    tools = "tools:\n  - {name: read_item, kind: read, description: Read., request: {path: /x}}\n"
    with pytest.raises(SpecError, match="endpoint '/desk/mcp' is already used"):
        load_tree(service_tree(tmp_path, "desk", service, tools), {})
