"""Progress of paged tools end to end: the official mcp client, in both eras, against the sandbox
serving pages of at most 100 rows, so the shipped search and aggregate tools read several pages.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sandbox import FIXTURES_DIR
from tests.e2e.stack import MODES, Stack, mcp_client, running_stack
from tests.support import RETENTLY_ANALYST

PAGE_SIZE = 100
FEEDBACK = json.loads((FIXTURES_DIR / "retently" / "feedback.json").read_text())["acc_demo"]
PAGES = math.ceil(len(FEEDBACK) / PAGE_SIZE)

Report = tuple[float, float | None, str | None]


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack(sandbox_page_size=PAGE_SIZE) as running:
        yield running


def every_page() -> list[Report]:
    """What a client hears from a call that reads all PAGES pages: nothing read yet, then each
    page as it is read, the count announced by the first."""
    return [(0.0, None, "Reading the first page"),
            *((float(n), float(PAGES), f"Read page {n} of {PAGES}") for n in range(1, PAGES + 1))]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("tool", "arguments"), [
    ("search_feedback", {"min_score": 0, "limit": 5}),
    ("aggregate_feedback", {"group_by": "channel"}),
])
async def test_a_paged_tool_reports_each_page_in_order_then_answers(
        stack: Stack, mode: str, tool: str, arguments: dict[str, Any]) -> None:
    assert PAGES >= 3  # the fixtures hold enough feedback for several pages
    reports: list[Report] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with mcp_client(stack.endpoint("retently"), RETENTLY_ANALYST, mode) as client:
        result = await client.call_tool(tool, arguments, progress_callback=progress)

    assert result.is_error is False, result.content
    assert reports == every_page()
    assert result.structured_content is not None
    assert result.structured_content["pages_read"] == PAGES
    assert result.structured_content["items_scanned"] == len(FEEDBACK)
    assert result.structured_content["complete"] is True


@pytest.mark.parametrize("mode", MODES)
async def test_without_a_progress_callback_the_same_call_answers_alone(
        stack: Stack, mode: str) -> None:
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ANALYST, mode) as client:
        result = await client.call_tool("aggregate_feedback", {"group_by": "channel"})

    assert result.is_error is False, result.content
    assert result.structured_content is not None
    assert result.structured_content["pages_read"] == PAGES
