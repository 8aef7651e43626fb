"""End to end: the official mcp client, in both eras, lists and calls every tool of the first slice
against the gateway in front of the sandbox upstream, all on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.types import TextContent

from tests.e2e.stack import MODES, Stack, mcp_client, running_stack
from tests.support import REFINER_FULL, RETENTLY_ADMIN

RETENTLY_SLICE = {"ping", "list_feedback", "get_feedback", "get_score", "list_campaigns",
                  "list_customers"}
REFINER_SLICE = {"get-projects", "get-forms", "get-responses", "get-aggregated-response-data"}


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack() as running:
        yield running


def structured(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


@pytest.mark.parametrize("mode", MODES)
async def test_retently_slice_lists_and_calls_every_tool(stack: Stack, mode: str) -> None:
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ADMIN, mode) as client:
        listed = await client.list_tools()
        assert {t.name for t in listed.tools} >= RETENTLY_SLICE

        pong = structured(await client.call_tool("ping", {}))
        assert pong["pong"] is True

        page = structured(await client.call_tool("list_feedback", {"limit": 5}))
        assert len(page["items"]) == 5 and page["total"] >= 300
        dates = [row["createdDate"] for row in page["items"]]
        assert dates == sorted(dates, reverse=True)

        one = structured(await client.call_tool("get_feedback", {"id": page["items"][0]["id"]}))
        assert one["id"] == page["items"][0]["id"]
        assert one["comment"] == page["items"][0]["comment"]

        score = structured(await client.call_tool("get_score", {"metric": "NPS"}))
        assert -100 <= score["score"] <= 100 and score["totalResponses"] > 0

        campaigns = structured(await client.call_tool("list_campaigns", {}))
        assert {c["metric"] for c in campaigns["items"]} >= {"NPS", "CSAT"}

        customers = structured(await client.call_tool("list_customers", {"limit": 3, "page": 2}))
        assert customers["page"] == 2 and len(customers["items"]) == 3


@pytest.mark.parametrize("mode", MODES)
async def test_refiner_slice_lists_and_calls_every_tool(stack: Stack, mode: str) -> None:
    async with mcp_client(stack.endpoint("refiner"), REFINER_FULL, mode) as client:
        listed = await client.list_tools()
        assert {t.name for t in listed.tools} >= REFINER_SLICE

        projects = structured(await client.call_tool("get-projects", {}))["items"]
        assert len(projects) == 3
        project = projects[0]["uuid"]

        forms = structured(await client.call_tool("get-forms", {"project_uuid": project}))
        assert forms["items"] and all("uuid" in f for f in forms["items"])

        responses = structured(await client.call_tool("get-responses", {
            "project_uuid": project, "page_length": 20}))
        assert 0 < len(responses["items"]) <= 20
        assert all(set(r["contact"]) == {"uuid"} for r in responses["items"])

        nps = structured(await client.call_tool("get-aggregated-response-data", {
            "project_uuid": project, "type": "nps"}))
        counts = nps["data"]
        assert nps["count"] == counts["promoters"] + counts["passives"] + counts["detractors"]


@pytest.mark.parametrize("mode", MODES)
async def test_upstream_refusal_reaches_the_model_as_a_tool_error(stack: Stack, mode: str) -> None:
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ADMIN, mode) as client:
        result = await client.call_tool("get_feedback", {"id": "0" * 24})
    assert result.is_error is True
    content = result.content[0]
    assert isinstance(content, TextContent)
    assert "404" in content.text
