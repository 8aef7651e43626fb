"""Writes a person confirms, end to end with the official TypeScript client at 2026-07-28
(`@modelcontextprotocol/client` 2.3.1, which `make node` installs in .node/ with the Inspector;
the 1.x `@modelcontextprotocol/sdk` has no 2026-07-28 era): tests/ts/elicitation.mjs answers
the gateway's question with an elicitation handler and calls add_note once; the note is made on
accept only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Stack, running_stack
from tests.e2e.test_typescript import run_script
from tests.support import REPO

NODE_DIR = REPO / ".node"
NODE = NODE_DIR / "node_modules" / ".bin" / "node"
CLIENT = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "client" / "package.json"
SCRIPT = REPO / "tests" / "ts" / "elicitation.mjs"
WRITER = "rtly_mcp_pat_demowriter_s3cr3t"


@pytest.fixture
def node() -> Path:
    if not (NODE.is_file() and CLIENT.is_file()):
        pytest.skip("Node 22 and @modelcontextprotocol/client are not installed in .node/ "
                    "(make node installs them)")
    return NODE


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack() as running:
        yield running


async def person_answers(node: Path, stack: Stack, action: str, note: str) -> dict[str, Any]:
    """What tests/ts/elicitation.mjs saw."""
    seen = await run_script(node, SCRIPT, stack.endpoint("retently"), WRITER, action, note)
    assert seen["protocolVersion"] == "2026-07-28"
    return seen


async def test_typescript_client_accepting_makes_the_change_in_one_call(
        node: Path, stack: Stack) -> None:
    seen = await person_answers(node, stack, "accept", "Confirmed from TypeScript.")
    assert len(seen["asked"]) == 1
    assert seen["asked"][0].startswith("Add note (add_note) in Retently: confirm this change.")
    assert "content: Confirmed from TypeScript." in seen["asked"][0]
    assert seen["result"]["isError"] is False
    assert seen["result"]["structuredContent"]["status"] == "done"
    assert "Confirmed from TypeScript." in seen["notes"]


async def test_typescript_client_declining_changes_nothing(node: Path, stack: Stack) -> None:
    seen = await person_answers(node, stack, "decline", "Declined from TypeScript.")
    assert len(seen["asked"]) == 1
    assert seen["result"]["isError"] is True
    assert "declined" in seen["result"]["content"][0]["text"]
    assert "Declined from TypeScript." not in seen["notes"]
