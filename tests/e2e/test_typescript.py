"""End to end with the official TypeScript SDK client (`@modelcontextprotocol/sdk`, from .node/):
tests/ts/client.mjs connects over Streamable HTTP, lists the tools and calls a few of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.protocol.envelope import LEGACY_VERSIONS
from tests.e2e.stack import Stack, mcp_client, running_stack
from tests.support import REFINER_FULL, REPO, RETENTLY_ADMIN

NODE_DIR = REPO / ".node"
NODE = NODE_DIR / "node_modules" / ".bin" / "node"
SDK = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
CLIENT_SCRIPT = REPO / "tests" / "ts" / "client.mjs"
RUN_TIMEOUT_S = 30.0
"""Above the script's own 20 s bound, so its stderr message is what a hang reports."""

RETENTLY_TOOL_COUNT = 53
RETENTLY_KEY_TOOLS = {"ping", "list_feedback", "get_feedback", "get_score", "list_campaigns",
                      "list_customers", "search_feedback", "reply_feedback"}
REFINER_TOOLS = {"get-projects", "get-forms", "get-segments", "get-tags", "get-traits",
                 "get-aggregated-response-data", "get-responses"}
REFINER_PROJECTS = {"Production", "Testing", "Mobile app"}


@pytest.fixture
def node() -> Path:
    if not (NODE.is_file() and SDK.is_file()):
        pytest.skip("Node 22 is not installed in .node/ (make node installs it)")
    return NODE


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack() as running:
        yield running


async def typescript_client(node: Path, url: str, token: str) -> dict[str, Any]:
    """What tests/ts/client.mjs saw, run from .node/ so it resolves the SDK installed there."""
    return await run_script(node, CLIENT_SCRIPT, url, token)


async def run_script(node: Path, script: Path, *arguments: str) -> dict[str, Any]:
    """What a script of tests/ts/ printed (one JSON object), run from .node/ so it resolves
    the SDK installed there; it must exit 0 within RUN_TIMEOUT_S."""
    process = await asyncio.create_subprocess_exec(
        str(node), str(script), *arguments, cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    seen = orjson.loads(stdout)
    assert isinstance(seen, dict)
    return seen


def negotiated_version(seen: dict[str, Any]) -> str:
    version = seen["protocolVersion"]
    assert version == seen["requestedVersion"], "the gateway did not take the SDK's latest version"
    assert version in LEGACY_VERSIONS
    return str(version)


def succeeded(seen: dict[str, Any], tool: str) -> dict[str, Any]:
    call = seen["results"][tool]
    assert call["isError"] is False, call["content"]
    content = call["structuredContent"]
    assert isinstance(content, dict)
    return content


async def test_typescript_sdk_lists_the_retently_catalog_and_calls_tools(
        node: Path, stack: Stack) -> None:
    url = stack.endpoint("retently")
    seen = await typescript_client(node, url, RETENTLY_ADMIN)
    async with mcp_client(url, RETENTLY_ADMIN, "legacy") as client:
        listed = [tool.name for tool in (await client.list_tools()).tools]

    negotiated_version(seen)
    assert seen["sessionId"] is None, "a stateless gateway hands out no session"
    assert seen["tools"] == listed
    assert len(seen["tools"]) == len(set(seen["tools"])) == RETENTLY_TOOL_COUNT
    assert set(seen["tools"]) >= RETENTLY_KEY_TOOLS

    page = succeeded(seen, "list_feedback")
    assert len(page["items"]) == 3
    assert all(isinstance(row["id"], str) and row["id"] for row in page["items"])
    assert succeeded(seen, "ping")["pong"] is True


async def test_typescript_sdk_lists_refiner_tools_and_gets_the_demo_projects(
        node: Path, stack: Stack) -> None:
    seen = await typescript_client(node, stack.endpoint("refiner"), REFINER_FULL)

    negotiated_version(seen)
    assert len(seen["tools"]) == len(REFINER_TOOLS)
    assert set(seen["tools"]) == REFINER_TOOLS

    projects = succeeded(seen, "get-projects")["items"]
    assert len(projects) == len(REFINER_PROJECTS)
    assert {project["name"] for project in projects} == REFINER_PROJECTS
