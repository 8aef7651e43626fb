"""No way around de-identification through the side doors: a write's preview does not map a
guessed address onto the pseudonym reads show for the real person, previews are bounded per
account, and filtering on a field the caller's scopes hide needs the scope that reveals it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
from aiohttp.test_utils import TestClient

from gateway.server.app import create_app
from gateway.settings import Settings
from tests.e2e.stack import Stack, running_stack
from tests.support import MCP_HEADERS, AiohttpClient, rpc

ADMIN = "rtly_mcp_pat_demoadmin_s3cr3t"
WRITER = "rtly_mcp_pat_demowriter_s3cr3t"  # surveys:send, no pii:read
ANALYST = "rtly_mcp_pat_demoanalyst_s3cr3t"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack() as running:
        yield running


async def call(stack: Stack, token: str, tool: str, arguments: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(stack.endpoint("retently"), headers={
            **MCP_HEADERS, "Authorization": f"Bearer {token}"},
            json=rpc("tools/call", {"name": tool, "arguments": arguments}))
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


async def a_customer(stack: Stack) -> tuple[str, str]:
    """A real customer's address (as the admin reads it) and its pseudonym (as a writer without
    pii:read reads the same row)."""
    seen = await call(stack, ADMIN, "list_customers", {"limit": 1})
    hidden = await call(stack, WRITER, "list_customers", {"limit": 1})
    real, pseudonym = (seen["structuredContent"]["items"][0]["email"],
                       hidden["structuredContent"]["items"][0]["email"])
    assert real != pseudonym and pseudonym.endswith("@pseudonym.invalid")
    return real, pseudonym


async def test_a_preview_shows_a_guessed_address_as_typed_not_as_its_pseudonym(
        stack: Stack) -> None:
    real, pseudonym = await a_customer(stack)
    campaigns = await call(stack, ADMIN, "search_campaigns", {"type": "transactional"})
    campaign = next(c["id"] for c in campaigns["structuredContent"]["items"] if c["isActive"])

    preview = await call(stack, WRITER, "send_survey", {
        "campaign_id": campaign, "subscribers": [{"email": real}]})

    shown = orjson.dumps(preview["structuredContent"]).decode()
    assert preview["structuredContent"]["status"] == "preview"
    assert pseudonym not in shown  # the guess is not confirmed...
    assert real in shown           # ...the caller's own input is shown as given


async def test_previews_are_bounded_per_account(aiohttp_client: AiohttpClient, tmp_path: Path
                                               ) -> None:
    folder = tmp_path / "desk"
    folder.mkdir()
    (folder / "service.yaml").write_text(
        "name: desk\ntitle: Desk\nendpoint: /desk/mcp\nupstream: {base_url: https://desk.test}\n"
        "auth: {resolver: passthrough, default_scopes: [notes]}\nscopes: [{name: notes}]\n"
        "writes: {previews_per_account_per_minute: 3, per_account_per_minute: 3}\n")
    (folder / "tools.yaml").write_text(
        "tools:\n  - name: add_note\n    kind: write\n    description: Add a note.\n"
        "    scopes: [notes]\n    input: {text: {type: string, required: true}}\n"
        "    request: {method: POST, path: /notes, body: {text: '{text}'}}\n")
    gateway = await aiohttp_client(create_app(Settings(specs_dir=tmp_path, log_json=True)))
    headers = {**MCP_HEADERS, "Authorization": "Bearer desk_token"}

    results = []
    for number in range(5):
        answer = await gateway.post("/desk/mcp", headers=headers, json=rpc(
            "tools/call", {"name": "add_note", "arguments": {"text": f"n{number}"}}))
        results.append((await answer.json())["result"])

    assert [r["isError"] for r in results] == [False, False, False, True, True]
    assert "preview limit" in results[3]["content"][0]["text"]


FILTERED = """
tools:
  - name: find_customers
    kind: read
    description: Customers whose hidden plan property matches.
    scopes: [customers]
    input:
      plan: {type: string}
      company: {type: string}
    collect:
      request: {method: GET, path: /customers}
      items: data
    filter:
      - {field: properties.plan, op: eq, value: '{plan}'}
      - {field: companyName, op: contains, value: '{company}'}
"""


@pytest.fixture
async def filtering(aiohttp_client: AiohttpClient, tmp_path: Path
                    ) -> AsyncIterator[TestClient[Any, Any]]:
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "service.yaml").write_text(
        "name: crm\ntitle: CRM\nendpoint: /crm/mcp\nupstream: {base_url: https://crm.test}\n"
        "auth: {resolver: passthrough, default_scopes: [customers]}\n"
        "scopes: [{name: customers}, {name: 'pii:read'}]\n"
        "pii: {scope: 'pii:read', fields: [email], drop: [properties]}\n")
    (folder / "tools.yaml").write_text(FILTERED)
    with respx.mock(using="httpx") as router:
        router.get("https://crm.test/customers").mock(return_value=httpx.Response(200, json={
            "data": [{"companyName": "Acme", "properties": {"plan": "Pro"}}]}))
        yield await aiohttp_client(create_app(Settings(specs_dir=tmp_path, log_json=True,
                                                       upstream_transport="httpx")))


async def test_filtering_on_a_hidden_field_needs_the_scope_that_reveals_it(
        filtering: TestClient[Any, Any]) -> None:
    headers = {**MCP_HEADERS, "Authorization": "Bearer crm_token"}

    hidden = await filtering.post("/crm/mcp", headers=headers, json=rpc(
        "tools/call", {"name": "find_customers", "arguments": {"plan": "Pro"}}))
    visible = await filtering.post("/crm/mcp", headers=headers, json=rpc(
        "tools/call", {"name": "find_customers", "arguments": {"company": "Ac"}}))

    assert hidden.status == 403
    assert 'scope="pii:read"' in hidden.headers["WWW-Authenticate"]
    assert visible.status == 200
    assert (await visible.json())["result"]["structuredContent"]["items_matched"] == 1


async def test_shipped_tools_filtering_on_customer_properties_need_pii_read(
        stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for tool in ("search_customers", "apply_filter"):
            answer = await client.post(stack.endpoint("retently"), headers={
                **MCP_HEADERS, "Authorization": f"Bearer {ANALYST}"},
                json=rpc("tools/call", {"name": tool, "arguments": {
                    "attributes": [{"name": "plan", "op": "gt", "value": "M"}]}}))
            assert answer.status_code == 403, tool
            assert 'scope="pii:read"' in answer.headers["WWW-Authenticate"]
