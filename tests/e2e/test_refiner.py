"""Refiner end to end with the official mcp client: the whole catalog, scopes, project grants,
date-window rules and contact privacy, against the sandbox upstream on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import ReadResourceResult, TextContent, TextResourceContents

from sandbox import FIXTURES_DIR
from tests.e2e.stack import MODES, Stack, mcp_client, running_stack
from tests.support import MCP_HEADERS

FULL = "refiner_demo_full"
REPORTING = "refiner_demo_reporting"
PRODUCTION = "a1b2c3d0-1111-11ee-8c3a-3f2b1e2d4c5a"
MOBILE = "c3d4e5f0-3333-11ee-ae5c-5b4d3e2f1a0c"  # not granted to the reporting token
TOOLS = {"get-projects", "get-forms", "get-responses", "get-segments", "get-tags", "get-traits",
         "get-aggregated-response-data"}
PROMPTS = {"nps_get_score_and_counts", "csat_get_score_and_counts",
           "multiple_choice_response_distribution", "retrieve_survey_responses",
           "nps_analyze_verbatim", "csat_analyze_verbatim", "analyze_open_ended_text_responses"}


def text_of(read: ReadResourceResult) -> str:
    content = read.contents[0]
    assert isinstance(content, TextResourceContents)
    return content.text


def contact_secrets() -> set[str]:
    """Every email, name and remote id of the fixtures' contacts and their accounts."""
    contacts = json.loads((FIXTURES_DIR / "refiner" / "contacts.json").read_text())
    found: set[str] = set()
    for people in contacts.values():
        for person in people:
            for owner in (person, person.get("account") or {}):
                found |= {str(owner[k]) for k in ("email", "display_name", "remote_id")
                          if owner.get(k)}
    return found


@pytest.fixture(scope="module")
def secrets() -> set[str]:
    found = contact_secrets()
    assert len(found) > 100
    return found


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack() as running:
        yield running


@pytest.mark.parametrize("mode", MODES)
async def test_the_full_token_sees_and_uses_the_whole_catalog(stack: Stack, mode: str) -> None:
    async with mcp_client(stack.endpoint("refiner"), FULL, mode) as client:
        tools = await client.list_tools()
        resources = await client.list_resources()
        templates = await client.list_resource_templates()
        prompts = await client.list_prompts()
        forms = await client.call_tool("get-forms", {"project_uuid": PRODUCTION})
        assert isinstance(forms.structured_content, dict)
        form = forms.structured_content["items"][0]["uuid"]
        uris = [
            "refiner://projects",
            f"refiner://project/{PRODUCTION}/forms",
            f"refiner://project/{PRODUCTION}/form/{form}",
            f"refiner://project/{PRODUCTION}/segments",
            f"refiner://project/{PRODUCTION}/tags",
        ]
        reads = {uri: await client.read_resource(uri) for uri in uris}
        values = {"project_uuid": PRODUCTION, "form_uuid": form, "question_identifier": "nps"}
        got = {prompt.name: await client.get_prompt(prompt.name, {
                   a.name: values[a.name] for a in prompt.arguments or [] if a.name in values})
               for prompt in prompts.prompts}

    assert {t.name for t in tools.tools} == TOOLS
    assert all(t.annotations and t.annotations.read_only_hint is True
               and t.annotations.destructive_hint is False for t in tools.tools)
    assert [r.uri for r in resources.resources] == ["refiner://projects"]
    assert {t.uri_template for t in templates.resource_templates} == {
        "refiner://project/{project_uuid}/forms", "refiner://project/{project_uuid}/form/{form_uuid}",
        "refiner://project/{project_uuid}/segments", "refiner://project/{project_uuid}/tags"}
    assert {p.name for p in prompts.prompts} == PROMPTS
    for uri, read in reads.items():
        content = read.contents[0]
        assert isinstance(content, TextResourceContents)
        assert content.mime_type == "application/json"
        assert json.loads(content.text)
        assert str(content.uri) == uri
    assert json.loads(text_of(reads[uris[2]]))["uuid"] == form
    for name, prompt in got.items():
        message = prompt.messages[0].content
        assert isinstance(message, TextContent)
        text = message.text
        assert PRODUCTION in text, name
        assert "get-" in text, name  # it steers through the tools


async def test_the_reporting_token_sees_only_its_tools_and_gets_403_for_the_rest(
        stack: Stack) -> None:
    async with mcp_client(stack.endpoint("refiner"), REPORTING, "legacy") as client:
        tools = await client.list_tools()
        nps = await client.call_tool("get-aggregated-response-data",
                                     {"project_uuid": PRODUCTION, "type": "nps"})
    assert {t.name for t in tools.tools} == {"get-projects", "get-segments", "get-tags",
                                             "get-traits", "get-aggregated-response-data"}
    assert nps.is_error is False
    for tool, scope in (("get-responses", "mcp:responses-read"), ("get-forms", "mcp:forms-read")):
        async with httpx2.AsyncClient() as http:
            answer = await http.post(stack.endpoint("refiner"), headers={
                **MCP_HEADERS, "Authorization": f"Bearer {REPORTING}"}, json={
                "jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": tool, "arguments": {"project_uuid": PRODUCTION}}})
        assert answer.status_code == 403
        challenge = answer.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge and f'scope="{scope}"' in challenge
        assert scope in answer.json()["error"]["message"]


@pytest.mark.parametrize("mode", MODES)
async def test_no_contact_data_leaves_any_tool_or_resource(stack: Stack, mode: str,
                                                          secrets: set[str]) -> None:
    texts: list[str] = []
    async with mcp_client(stack.endpoint("refiner"), FULL, mode) as client:
        for project in (PRODUCTION, MOBILE):
            arguments = {"project_uuid": project}
            for tool in sorted(TOOLS - {"get-projects", "get-aggregated-response-data"}):
                extra = {"page_length": 500} if tool == "get-responses" else {}
                result = await client.call_tool(tool, {**arguments, **extra})
                assert result.is_error is False, (tool, result.content)
                texts.append(json.dumps(result.structured_content))
            for chart in ("nps", "csat", "ratings", "count", "distribution"):
                result = await client.call_tool("get-aggregated-response-data",
                                                {**arguments, "type": chart})
                texts.append(json.dumps(result.structured_content))
            for suffix in ("forms", "segments", "tags"):
                read = await client.read_resource(f"refiner://project/{project}/{suffix}")
                texts.append(text_of(read))
    everything = "\n".join(texts)
    assert '"items"' in everything and "nps" in everything
    leaked = sorted(s for s in secrets if s in everything)
    assert leaked == []


async def call(stack: Stack, arguments: dict[str, Any],
               tool: str = "get-responses") -> Any:
    """One tool call; a JSON-RPC error is raised as the client's MCPError."""
    refused: MCPError | None = None
    async with mcp_client(stack.endpoint("refiner"), REPORTING if tool.startswith(
            "get-agg") else FULL, "legacy") as client:
        try:
            return await client.call_tool(tool, arguments)
        except MCPError as error:
            refused = error
    raise refused


@pytest.mark.parametrize(("arguments", "words"), [
    ({"date_range_start": "2019-01-01"}, "at most 12 months"),
    ({"date_range_start": "2026-01-10", "date_range_end": "2026-01-01"}, "must come after"),
])
async def test_date_rules_are_refused_saying_the_rule(stack: Stack, arguments: dict[str, Any],
                                                      words: str) -> None:
    result = await call(stack, {"project_uuid": PRODUCTION, **arguments})
    assert result.is_error is True
    assert words in result.content[0].text


async def test_the_effective_window_is_echoed(stack: Stack) -> None:
    result = await call(stack, {"project_uuid": PRODUCTION, "type": "count"},
                        "get-aggregated-response-data")
    window = result.structured_content["date_range"]
    assert window["start"] < window["end"]


async def test_a_project_outside_the_grant_is_refused_before_any_data(stack: Stack) -> None:
    result = await call(stack, {"project_uuid": MOBILE, "type": "nps"},
                        "get-aggregated-response-data")
    assert result.is_error is True
    assert "not one this token may read" in result.content[0].text


async def test_a_cursor_the_upstream_does_not_know_is_a_tool_error(stack: Stack) -> None:
    result = await call(stack, {"project_uuid": PRODUCTION, "page_cursor": "bm90LWEtY3Vyc29y"})
    assert result.is_error is True
    assert "400" in result.content[0].text


@pytest.mark.parametrize("arguments", [
    {"project_uuid": "not-a-uuid"},
    {"project_uuid": PRODUCTION, "date_range_start": "yesterday"},
    {"project_uuid": PRODUCTION, "form_uuids": f"{PRODUCTION},,{PRODUCTION}"},
    {"project_uuid": PRODUCTION, "form_uuids": ",".join([PRODUCTION] * 1000)},
    {"project_uuid": PRODUCTION, "page_length": 1000},
    {"project_uuid": PRODUCTION, "page_cursor": "garbage!!"},
])
async def test_malformed_arguments_are_invalid_params(stack: Stack,
                                                      arguments: dict[str, Any]) -> None:
    with pytest.raises(MCPError) as refused:
        await call(stack, arguments)
    assert refused.value.error.code == -32602


async def test_an_unknown_chart_type_is_invalid_params(stack: Stack) -> None:
    with pytest.raises(MCPError) as refused:
        await call(stack, {"project_uuid": PRODUCTION, "type": "pie"},
                   "get-aggregated-response-data")
    assert refused.value.error.code == -32602


@pytest.mark.parametrize(("token", "uri"), [
    (FULL, f"refiner://project/{PRODUCTION}/forms/extra"),
    (FULL, f"refiner://project/{PRODUCTION}%2Fforms/forms"),
    (FULL, f"refiner://project/{PRODUCTION}/form/a%2Fb"),
    (FULL, f"refiner://project/{PRODUCTION}/form/{PRODUCTION}%2F"),
    (FULL, "refiner://nothing"),
    (REPORTING, f"refiner://project/{MOBILE}/segments"),
])
async def test_bad_or_foreign_resource_uris_get_an_explicit_error(stack: Stack, token: str,
                                                                  uri: str) -> None:
    async with mcp_client(stack.endpoint("refiner"), token, "legacy") as client:
        with pytest.raises(MCPError) as refused:
            await client.read_resource(uri)
    assert refused.value.error.code == -32602


@pytest.mark.parametrize(("arguments", "problem"), [
    ({}, "project_uuid: required"),
    ({"project_uuid": PRODUCTION, "colour": "blue"}, "colour: unknown argument"),
    ({"project_uuid": "x"}, "project_uuid: does not match"),
])
async def test_prompt_arguments_are_checked(stack: Stack, arguments: dict[str, str],
                                            problem: str) -> None:
    async with mcp_client(stack.endpoint("refiner"), FULL, "legacy") as client:
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("nps_get_score_and_counts", arguments)
    assert refused.value.error.code == -32602
    assert problem in " ".join(refused.value.error.data["problems"])


@pytest.mark.parametrize(("token", "says"), [
    ("refiner_key_production", "REST API key"),
    ("refiner_demo_expired", "expired or was revoked"),
])
async def test_a_rest_api_key_is_refused_as_one_not_as_an_expired_token(
        stack: Stack, token: str, says: str) -> None:
    async with httpx2.AsyncClient() as http:
        answer = await http.post(stack.endpoint("refiner"), headers={
            **MCP_HEADERS, "Authorization": f"Bearer {token}"}, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "get-projects", "arguments": {}}})
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert says in challenge
