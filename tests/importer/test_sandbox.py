"""End to end on an OpenAPI description written for this purpose
(fixtures/openapi/retently-sandbox.yaml): imported as it is, served by the gateway in front of
the sandbox upstream on loopback, and called with the official mcp client and a demo token.

The only setting the operator gives is the one the generated service.yaml names: the
sandbox wants `Authorization: api_key=<key>`, which OpenAPI cannot spell, so
RETENTLY_SANDBOX_CREDENTIAL_PREFIX=api_key= is set beside the base URL. No file is edited.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from gateway.importer.run import Options, import_openapi
from gateway.server.app import create_app
from gateway.server.cli import main
from gateway.settings import Settings
from gateway.spec.loader import load_tree
from sandbox import FIXTURES_DIR, create_sandbox_app
from tests.e2e.stack import MODES, mcp_client, serve_on_loopback
from tests.importer.support import read_back
from tests.support import REPO, RETENTLY_ADMIN

DOCUMENT = REPO / "fixtures" / "openapi" / "retently-sandbox.yaml"
SERVICE = "retently-sandbox"
TOOLS = {"list_feedback", "list_feedback_statuses", "get_feedback", "add_feedback_note",
         "set_response_tags", "list_customers", "get_customer", "list_companies", "get_company",
         "list_campaigns", "list_templates", "get_template", "get_score", "list_outbox", "ping"}


def fixture_rows(name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        (FIXTURES_DIR / "retently" / f"{name}.json").read_text())["acc_demo"]
    return rows


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The document imported once, with the command an operator runs."""
    out = tmp_path_factory.mktemp("imported") / SERVICE
    with pytest.raises(SystemExit) as exited:
        main(["import-openapi", str(DOCUMENT), "--service", SERVICE, "--out", str(out)])
    assert exited.value.code == 0
    return out


@asynccontextmanager
async def gateway(folder: Path, prefix: str | None = "api_key=") -> AsyncIterator[str]:
    """The sandbox and the gateway serving the imported folder; yields the MCP endpoint."""
    sandbox, sandbox_url = await serve_on_loopback(create_sandbox_app())
    try:
        env = {"RETENTLY_SANDBOX_API_URL": f"{sandbox_url}/api/v2"}
        if prefix is not None:
            env["RETENTLY_SANDBOX_CREDENTIAL_PREFIX"] = prefix
        settings = Settings(log_json=True, log_level="warning")
        runner, url = await serve_on_loopback(create_app(settings, load_tree(folder, env)))
        try:
            yield f"{url}/{SERVICE}/mcp"
        finally:
            await runner.cleanup()
    finally:
        await sandbox.cleanup()


def data(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    content: dict[str, Any] = result.structured_content
    return content


def test_the_import_maps_every_operation_and_leaves_nothing_out(
        folder: Path, tmp_path: Path) -> None:
    report = import_openapi(Options(str(DOCUMENT), SERVICE, tmp_path / SERVICE))
    assert (report.found, len(report.generated), report.skipped, report.unmapped) == (
        15, 15, [], [])
    registry, service, tools = read_back(folder)
    assert set(registry.services[0].tools) == set(tools) == TOOLS
    assert {name for name, tool in tools.items() if tool["kind"] == "write"} == {
        "add_feedback_note", "set_response_tags"}
    assert service["upstream"]["credential"] == {
        "header": "Authorization", "format": "${RETENTLY_SANDBOX_CREDENTIAL_PREFIX}{token}"}


@pytest.mark.parametrize("mode", MODES)
async def test_the_generated_read_tools_return_the_sandboxs_data(folder: Path, mode: str) -> None:
    feedback, customers = fixture_rows("feedback"), fixture_rows("customers")
    async with gateway(folder) as endpoint, mcp_client(endpoint, RETENTLY_ADMIN, mode) as client:
        listed = await client.list_tools()
        assert {tool.name for tool in listed.tools} == TOOLS
        page = data(await client.call_tool("list_feedback", {"limit": 3}))["data"]
        one = data(await client.call_tool("get_feedback", {"id": page["responses"][0]["id"]}))
        people = data(await client.call_tool("list_customers", {"limit": 2}))["data"]
        person = data(await client.call_tool("get_customer",
                                             {"id": people["subscribers"][1]["id"]}))["data"]
        campaigns = data(await client.call_tool("list_campaigns", {}))["campaigns"]
        template = data(await client.call_tool("get_template",
                                               {"id": campaigns[0]["templateId"]}))["data"]
        companies = data(await client.call_tool("list_companies", {}))["data"]["companies"]
        company = data(await client.call_tool("get_company",
                                              {"key": companies[0]["domain"]}))["data"]
        score = data(await client.call_tool("get_score", {"metric": "nps"}))["data"]
        outbox = data(await client.call_tool("list_outbox", {"limit": 1, "channel": "email"}))
    assert (page["total"], len(page["responses"])) == (len(feedback), 3)
    assert one["data"]["responses"][0]["id"] == page["responses"][0]["id"]
    assert person["email"] in {row["email"] for row in customers}
    assert template["surveyQuestions"] and company["id"] == companies[0]["id"]
    assert score["metricsType"] == "NPS" and score["totalResponses"] > 0
    assert outbox["data"]["surveys"][0]["channel"] == "email"


async def test_a_generated_write_previews_then_confirms_and_the_change_is_read_back(
        folder: Path) -> None:
    async with (gateway(folder) as endpoint,
                mcp_client(endpoint, RETENTLY_ADMIN, "legacy") as client):
        target = data(await client.call_tool("list_feedback", {"limit": 1}))["data"][
            "responses"][0]["id"]
        arguments = {"id": target, "content": "Called back from an imported tool."}
        preview = data(await client.call_tool("add_feedback_note", arguments))
        unchanged = await notes_of(client, target)
        done = data(await client.call_tool("add_feedback_note", {
            **arguments, "confirmation_token": preview["confirmation_token"]}))
        tagged = await confirmed(client, "set_response_tags",
                                 {"id": target, "tags": ["imported"], "op": "append"})
        after = data(await client.call_tool("get_feedback", {"id": target}))["data"][
            "responses"][0]
    assert preview["status"] == "preview" and preview["changed"] is False
    assert preview["would_send"]["method"] == "POST"
    assert preview["would_send"]["url"].endswith(f"/api/v2/feedback/{target}/notes")
    assert preview["would_send"]["body"] == {"content": arguments["content"]}
    assert arguments["content"] not in unchanged
    assert done["status"] == "done" and done["result"]["data"]["note"]["content"] == (
        arguments["content"])
    assert tagged["status"] == "done"
    assert arguments["content"] in [note["content"] for note in after["notes"]]
    assert "imported" in after["feedbackTags"]


async def notes_of(client: Client, feedback_id: str) -> list[str]:
    record = data(await client.call_tool("get_feedback", {"id": feedback_id}))["data"][
        "responses"][0]
    return [note["content"] for note in record["notes"]]


async def confirmed(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    preview = data(await client.call_tool(tool, arguments))
    return data(await client.call_tool(tool, {**arguments,
                                              "confirmation_token": preview["confirmation_token"]}))


async def test_without_the_credential_prefix_the_sandbox_refuses_the_key(folder: Path) -> None:
    async with (gateway(folder, prefix=None) as endpoint,
                mcp_client(endpoint, RETENTLY_ADMIN, "legacy") as client):
        result = await client.call_tool("ping", {})
    assert result.is_error is True
    assert "HTTP 401" in result.content[0].text  # type: ignore[union-attr]
