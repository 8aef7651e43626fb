"""Retently end to end with the official mcp client against the sandbox upstream: the whole
catalog for the admin, de-identified reads for the analyst, and two-phase writes for the writer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent

from sandbox import FIXTURES_DIR
from tests.e2e.stack import MODES, Stack, mcp_client, running_stack
from tests.support import MCP_HEADERS, RETENTLY_ADMIN, RETENTLY_ANALYST

WRITER = "rtly_mcp_pat_demowriter_s3cr3t"
CATALOG = {
    # Feedback
    "list_feedback", "list_recent_feedback", "get_feedback", "get_feedback_replies",
    "search_feedback", "aggregate_feedback", "list_statuses", "tag_feedback", "set_topics",
    "star_feedback", "assign_feedback", "resolve_feedback", "add_note", "reply_feedback",
    # Filters
    "describe_filters", "apply_filter", "list_saved_filters", "list_recent_filters",
    # Reports and scores
    "get_score", "get_monthly_stats", "get_topic_stats", "get_report", "get_trends",
    "get_trends_group",
    # Customers and companies
    "list_customers", "search_customers", "get_customer", "update_contact", "list_companies",
    "get_company",
    # Campaigns, surveys, templates, digests
    "list_campaigns", "search_campaigns", "get_campaign", "send_survey", "list_templates",
    "search_templates", "list_digests", "get_digest",
    # Delivery, suppressions, integrations, team, account, server
    "list_outbox", "get_outbox_stats", "get_queue_status", "list_suppressed_domains",
    "list_suppressed_emails", "get_suppressed_email", "list_integrations",
    "get_integration_status", "list_users", "get_user", "get_plan_usage",
    "list_account_attributes", "list_tags", "list_topics", "ping",
}
NEEDS_PII = {"list_suppressed_emails", "get_suppressed_email"}


def people() -> set[str]:
    """Every email and name of the fixtures' customers and team members."""
    found: set[str] = set()
    for name in ("customers.json", "users.json"):
        accounts = json.loads((FIXTURES_DIR / "retently" / name).read_text())
        for rows in accounts.values():
            for row in rows:
                found |= {row[k] for k in ("email", "firstName", "lastName") if row.get(k)}
    return found


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack() as running:
        yield running


def data(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    content: dict[str, Any] = result.structured_content
    return content


async def first_ids(client: Client) -> dict[str, str]:
    """Ids every read tool can be called with, taken from list tools as a model would."""
    feedback = data(await client.call_tool("list_feedback", {"limit": 5}))["items"]
    with_reply = data(await client.call_tool("search_feedback", {"limit": 100}))["items"]
    return {
        "feedback": feedback[0]["id"],
        "replied": with_reply[0]["id"],
        "campaign": data(await client.call_tool("list_campaigns", {}))["items"][0]["id"],
        "company": data(await client.call_tool("list_companies", {}))["items"][0]["id"],
        "customer": data(await client.call_tool("list_customers", {}))["items"][0]["id"],
        "digest": data(await client.call_tool("list_digests", {}))["items"][0]["id"],
        "integration": data(await client.call_tool("list_integrations", {}))["items"][0]["id"],
        "user": data(await client.call_tool("list_users", {}))["items"][0]["id"],
    }


def read_calls(ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One call of every read tool, with realistic arguments."""
    return {
        "list_feedback": {"limit": 50},
        "list_recent_feedback": {"days": 30},
        "get_feedback": {"id": ids["feedback"]},
        "get_feedback_replies": {"id": ids["replied"]},
        "search_feedback": {"text": "support", "limit": 50},
        "aggregate_feedback": {"group_by": "company"},
        "list_statuses": {},
        "describe_filters": {},
        "apply_filter": {},
        "list_saved_filters": {},
        "list_recent_filters": {},
        "get_score": {"metric": "NPS"},
        "get_monthly_stats": {},
        "get_topic_stats": {},
        "get_report": {},
        "get_trends": {},
        "get_trends_group": {},
        "list_customers": {"limit": 100},
        "search_customers": {"company": "a"},
        "get_customer": {"id": ids["customer"]},
        "list_companies": {},
        "get_company": {"company": ids["company"]},
        "list_campaigns": {},
        "search_campaigns": {},
        "get_campaign": {"id": ids["campaign"]},
        "list_templates": {},
        "search_templates": {},
        "list_digests": {},
        "get_digest": {"id": ids["digest"]},
        "list_outbox": {"limit": 100},
        "get_outbox_stats": {},
        "get_queue_status": {},
        "list_suppressed_domains": {},
        "list_integrations": {},
        "get_integration_status": {"integration_id": ids["integration"]},
        "list_users": {},
        "get_user": {"id": ids["user"]},
        "get_plan_usage": {},
        "list_account_attributes": {},
        "list_tags": {},
        "list_topics": {},
    }


@pytest.mark.parametrize("mode", MODES)
async def test_the_admin_sees_exactly_the_53_tools(stack: Stack, mode: str) -> None:
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ADMIN, mode) as client:
        tools = (await client.list_tools()).tools
    assert len(CATALOG) == 53
    assert {t.name for t in tools} == CATALOG
    kinds = {t.name: t.annotations for t in tools}
    assert kinds["send_survey"] and kinds["send_survey"].read_only_hint is False
    assert kinds["get_score"] and kinds["get_score"].read_only_hint is True


async def test_the_analyst_reads_everything_de_identified_and_the_admin_as_is(
        stack: Stack) -> None:
    secrets = people()
    texts: dict[str, str] = {}
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ANALYST, "legacy") as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        calls = read_calls(await first_ids(client))
        for tool, arguments in calls.items():
            texts[tool] = json.dumps(data(await client.call_tool(tool, arguments)))
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ADMIN, "legacy") as client:
        admin = {tool: json.dumps(data(await client.call_tool(tool, arguments)))
                 for tool, arguments in read_calls(await first_ids(client)).items()}

    reads = {n for n in CATALOG if n not in NEEDS_PII and n != "ping"} - {
        "tag_feedback", "set_topics", "star_feedback", "assign_feedback", "resolve_feedback",
        "add_note", "reply_feedback", "update_contact", "send_survey"}
    assert set(calls) == reads  # every read tool was called
    assert listed & NEEDS_PII == set()  # tools that are all personal data are not offered
    leaks = {tool: sorted(s for s in secrets if s in text) for tool, text in texts.items()}
    assert {tool: found for tool, found in leaks.items() if found} == {}
    shown = {tool for tool, text in admin.items() if any(s in text for s in secrets)}
    assert {"list_feedback", "get_feedback", "list_customers", "get_customer", "list_users",
            "get_user", "list_outbox"} <= shown
    assert "pseudonym.invalid" in texts["list_feedback"]


async def test_the_analyst_is_refused_tools_and_searches_that_need_pii(stack: Stack) -> None:
    async with httpx2.AsyncClient() as http:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {RETENTLY_ANALYST}"}
        answers = [await http.post(stack.endpoint("retently"), headers=headers, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}})
            for name, arguments in (("list_suppressed_emails", {}),
                                    ("search_customers", {"email": "anyone@example.com"}),
                                    ("search_customers", {"name": "Smith"}))]
    for answer in answers:
        assert answer.status_code == 403
        assert 'scope="pii:read"' in answer.headers["www-authenticate"]
        assert "pii:read" in answer.json()["error"]["message"]


async def confirm(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    preview = data(await client.call_tool(tool, arguments))
    assert preview["status"] == "preview" and preview["changed"] is False
    return data(await client.call_tool(tool, {**arguments,
                                              "confirmation_token": preview["confirmation_token"]}))


@pytest.mark.parametrize("mode", MODES)
async def test_the_writer_previews_and_confirms_and_the_change_is_read_back(
        stack: Stack, mode: str) -> None:
    async with mcp_client(stack.endpoint("retently"), WRITER, mode) as client:
        target = data(await client.call_tool("list_feedback", {"limit": 1}))["items"][0]["id"]
        before = data(await client.call_tool("get_feedback", {"id": target}))
        tagged = await confirm(client, "tag_feedback", {"id": target, "add": ["e2e-check"]})
        noted = await confirm(client, "add_note", {"id": target, "content": "Called back."})
        resolved = await confirm(client, "resolve_feedback", {"id": target})
        after = data(await client.call_tool("get_feedback", {"id": target}))
    assert "e2e-check" not in (before.get("feedbackTags") or [])
    assert tagged["status"] == noted["status"] == resolved["status"] == "done"
    assert "e2e-check" in after["feedbackTags"]
    assert any(n["content"] == "Called back." for n in after["notes"])
    assert after["resolved"] is True


async def test_a_preview_changes_nothing_upstream(stack: Stack) -> None:
    async with mcp_client(stack.endpoint("retently"), WRITER, "legacy") as client:
        target = data(await client.call_tool("list_feedback", {"limit": 1}))["items"][0]["id"]
        preview = data(await client.call_tool("tag_feedback",
                                               {"id": target, "add": ["never-applied"]}))
        after = data(await client.call_tool("get_feedback", {"id": target}))
    assert preview["status"] == "preview"
    assert "never-applied" not in (after.get("feedbackTags") or [])


async def test_a_write_without_its_scope_is_refused(stack: Stack) -> None:
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ANALYST, "legacy") as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("tag_feedback", {"id": "5a9d595701c85b37224ab2d0",
                                                    "add": ["x"]})
    assert "feedback:tag" in refused.value.error.message


async def test_monthly_stats_cover_exactly_the_last_12_calendar_months(stack: Stack) -> None:
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ANALYST, "legacy") as client:
        months = [m["month"] for m in
                  data(await client.call_tool("get_monthly_stats", {}))["months"]]
    newest = months[0]
    year, month = divmod(int(newest[:4]) * 12 + int(newest[5:7]) - 1 - 11, 12)
    assert len(months) == 12
    assert months == sorted(months, reverse=True)
    assert months[-1] == f"{year:04d}-{month + 1:02d}"


@pytest.mark.parametrize(("tool", "lacking"), [("list_campaigns", "default"),
                                               ("list_templates", "subject")])
async def test_campaign_and_template_lists_promise_only_what_the_rest_api_returns(
        stack: Stack, tool: str, lacking: str) -> None:
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ANALYST, "legacy") as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}[tool]
        items = data(await client.call_tool(tool, {}))["items"]
    assert listed.output_schema is not None and listed.description is not None
    declared = set(listed.output_schema["properties"]["items"]["items"]["properties"])
    promise, _, caveat = listed.description.partition(". ")
    assert items and all(set(item) == declared for item in items)
    assert lacking not in promise and f"no {lacking}" in caveat


@pytest.mark.parametrize(("is_active", "kind", "says"), [
    (False, "transactional", "disabled"), (True, "recurring", "not a transactional campaign")])
async def test_a_survey_send_through_a_campaign_that_cannot_send_is_refused_at_preview(
        stack: Stack, is_active: bool, kind: str, says: str) -> None:
    async with mcp_client(stack.endpoint("retently"), WRITER, "legacy") as client:
        campaign = data(await client.call_tool("search_campaigns", {
            "type": kind, "is_active": is_active}))["items"][0]["id"]
        preview = await client.call_tool("send_survey", {
            "campaign_id": campaign, "subscribers": [{"email": "qa@yourco.com"}]})
    assert preview.is_error is True and isinstance(preview.content[0], TextContent)
    text = preview.content[0].text
    assert says in text and campaign in text and "confirmation_token" not in text


def replay_arguments(spec: dict[str, Any]) -> dict[str, Any]:
    """apply_filter's arguments for a saved or recent filter's spec, as its description says."""
    attributes = [{"name": c["field"].removeprefix("attributes."), "op": c["op"],
                   "value": c["value"]}
                  for c in spec["conditions"] if c["field"].startswith("attributes.")]
    conditions = [c for c in spec["conditions"] if not c["field"].startswith("attributes.")]
    return {"conditions": conditions, "attributes": attributes, "match": spec["match"]}


def holds(row: dict[str, Any], condition: dict[str, Any]) -> bool:
    """The sandbox's reading of one spec condition, as an oracle for apply_filter."""
    field: str = condition["field"]
    op: str = condition["op"]
    wanted: Any = condition["value"]
    props = {p["name"]: p["value"] for p in row.get("customProps") or []}
    actual = props.get(field.removeprefix("attributes.")) if field.startswith(
        "attributes.") else row.get(field)
    if actual is None:
        return op == "ne"
    if op == "contains":
        return str(wanted).lower() in str(actual).lower()
    if isinstance(actual, str):
        actual, wanted = actual.lower(), str(wanted).lower()
    outcomes: dict[str, bool] = {
        "eq": actual == wanted, "ne": actual != wanted, "gt": actual > wanted,
        "gte": actual >= wanted, "lt": actual < wanted, "lte": actual <= wanted}
    return outcomes[op]


async def test_every_saved_and_recent_filter_replays_to_exactly_its_matches(
        stack: Stack) -> None:
    rows = json.loads((FIXTURES_DIR / "retently" / "feedback.json").read_text())["acc_demo"]
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ADMIN, "legacy") as client:
        filters = [*data(await client.call_tool("list_saved_filters", {}))["items"],
                   *data(await client.call_tool("list_recent_filters", {}))["items"]]
        matched = [data(await client.call_tool("apply_filter", replay_arguments(f["spec"])))
                   for f in filters]
    assert len(filters) == 5
    assert {f["spec"]["match"] for f in filters} == {"all", "any"}
    for found, saved in zip(matched, filters, strict=True):
        joined = all if saved["spec"]["match"] == "all" else any
        expected = [r for r in rows if joined(holds(r, c) for c in saved["spec"]["conditions"])]
        assert found["complete"] is True
        assert found["items_matched"] == len(expected) > 0, saved


@pytest.mark.parametrize("spec", [
    {"match": "any", "conditions": [{"field": "score", "op": "lte", "value": 6},
                                    {"field": "attributes.region", "op": "eq", "value": "EU"}]},
    {"match": "any", "conditions": [{"field": "attributes.plan", "op": "eq", "value": "Pro"},
                                    {"field": "attributes.seats", "op": "gt", "value": 100}]},
    {"match": "all", "conditions": [{"field": "metricsType", "op": "eq", "value": "NPS"},
                                    {"field": "score", "op": "gte", "value": 9},
                                    {"field": "attributes.region", "op": "ne", "value": "EU"}]},
])
async def test_a_spec_mixing_customer_properties_and_other_fields_replays_faithfully(
        stack: Stack, spec: dict[str, Any]) -> None:
    rows = json.loads((FIXTURES_DIR / "retently" / "feedback.json").read_text())["acc_demo"]
    joined = all if spec["match"] == "all" else any
    expected = [r for r in rows if joined(holds(r, c) for c in spec["conditions"])]
    async with mcp_client(stack.endpoint("retently"), RETENTLY_ADMIN, "legacy") as client:
        found = data(await client.call_tool("apply_filter", replay_arguments(spec)))
    assert found["items_matched"] == len(expected) > 0
