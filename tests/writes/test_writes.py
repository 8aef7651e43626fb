"""Two-phase writes through the endpoint: a preview that changes nothing, then one confirmed
execution bound to tool, arguments, principal and expiry, inside a per-account rate limit.

A small spec tree of its own (tmp_path) with an injected clock; the authorization server and the
upstream are faked at the network edge. One end-to-end test runs the shipped tag_feedback against
the sandbox upstream with the official client, in both eras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
from aiohttp.test_utils import TestClient

from gateway.upstream.mock_wire import MockWire
from tests.e2e.stack import MODES, mcp_client, running_stack
from tests.support import (
    AiohttpClient,
    Clock,
    auth,
    gateway_app,
    introspection_of,
    rpc,
    service_tree,
)
from tests.writes.desk import (
    API,
    COLLEAGUE,
    FAR,
    INTROSPECT,
    OTHER_ACCOUNT,
    READER,
    START,
    URL,
    WRITER,
    service,
    tokens,
)

TOKENS = tokens("notes:read notes:write")
SERVICE = service(["notes:read", "notes:write"], "{confirm_ttl_s: 120, per_account_per_minute: 2}")
TOOLS = """
version: 1
tools:
  - name: retitle_note
    kind: write
    description: Change a note's title and add labels. Previews first.
    scopes: ["notes:write"]
    input:
      id: {type: string, pattern: '^n[0-9]+$', required: true}
      title: {type: string, required: true}
      labels: {type: array, items: {type: string}}
      notify: {type: boolean}
    write:
      preview: {method: GET, path: '/notes/{id}'}
      preview_select: 'note.{title: title, labels: labels}'
    request:
      method: PATCH
      path: /notes/{id}
      query: {notify: '{notify}'}
      body:
        title: '{title}'
        labels: {$expr: 'union(current.labels, args.labels)'}
    response: {select: note}
  - name: archive_note
    kind: write
    description: Archive a note.
    scopes: ["notes:write"]
    input:
      id: {type: string, pattern: '^n[0-9]+$', required: true}
      reason: {type: string}
    request: {method: POST, path: '/notes/{id}/archive', body: {reason: '{reason}'}}
"""
ARGS: dict[str, Any] = {"id": "n1", "title": "New title", "labels": ["b"]}


introspection = introspection_of(TOKENS, FAR)


@dataclass
class Upstream:
    router: respx.MockRouter
    read: respx.Route
    patch: respx.Route
    archive: respx.Route

    def methods(self) -> list[str]:
        return [c.request.method for c in self.router.calls if c.request.url.host == API]


@pytest.fixture
def upstream(router: respx.MockRouter) -> Upstream:
    router.post(INTROSPECT).mock(side_effect=introspection)
    read = router.get(f"https://{API}/v1/notes/n1").mock(return_value=httpx.Response(
        200, json={"note": {"id": "n1", "title": "Old title", "labels": ["a"]}}))
    patch = router.patch(f"https://{API}/v1/notes/n1").mock(return_value=httpx.Response(
        200, json={"note": {"id": "n1", "title": "New title", "labels": ["a", "b"]}}))
    archive = router.post(f"https://{API}/v1/notes/n1/archive").mock(
        return_value=httpx.Response(200, json={"archived": True}))
    return Upstream(router, read, patch, archive)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, tmp_path: Path, clock: Clock,
                  upstream: Upstream, wire: MockWire) -> TestClient[Any, Any]:
    specs = service_tree(tmp_path, "desk", SERVICE, TOOLS)
    return await aiohttp_client(gateway_app(wire, specs_dir=specs, clock=clock))


async def send(client: TestClient[Any, Any], name: str, arguments: dict[str, Any],
               token: str = WRITER) -> tuple[int, dict[str, Any]]:
    response = await client.post(URL, headers=auth(token), json=rpc(
        "tools/call", {"name": name, "arguments": arguments}))
    body: dict[str, Any] = await response.json()
    return response.status, body


async def result_of(client: TestClient[Any, Any], name: str, arguments: dict[str, Any],
                    token: str = WRITER) -> dict[str, Any]:
    status, body = await send(client, name, arguments, token)
    assert status == 200, body
    result: dict[str, Any] = body["result"]
    return result


async def preview(client: TestClient[Any, Any], arguments: dict[str, Any] = ARGS,
                  token: str = WRITER, name: str = "retitle_note") -> dict[str, Any]:
    result = await result_of(client, name, arguments, token)
    assert result["isError"] is False, result
    structured: dict[str, Any] = result["structuredContent"]
    assert structured["status"] == "preview"
    return structured


async def confirm(client: TestClient[Any, Any], confirmation: Any,
                  arguments: dict[str, Any] = ARGS, token: str = WRITER,
                  name: str = "retitle_note") -> dict[str, Any]:
    return await result_of(client, name, {**arguments, "confirmation_token": confirmation}, token)


def refused(result: dict[str, Any], words: str) -> bool:
    text: str = result["content"][0]["text"]
    return result["isError"] is True and text.startswith("Not executed.") and words in text


def flip(token: str, index: int) -> str:
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1:]


# --- the preview ------------------------------------------------------------------------------


async def test_a_write_without_a_confirmation_only_previews_and_sends_no_change(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    shown = await preview(gateway)
    assert shown["changed"] is False
    assert upstream.methods() == ["GET"]
    assert not upstream.patch.called


async def test_a_preview_shows_the_request_it_would_send_and_the_current_state(
        gateway: TestClient[Any, Any]) -> None:
    shown = await preview(gateway, {**ARGS, "notify": True})
    assert shown["would_send"] == {
        "method": "PATCH",
        "url": "https://api.desk.test/v1/notes/n1",
        "query": {"notify": "true"},
        "body": {"title": "New title", "labels": ["a", "b"]},
    }
    assert shown["current"] == {"title": "Old title", "labels": ["a"]}
    assert "Authorization" not in orjson.dumps(shown).decode()


async def test_a_preview_carries_a_confirmation_token_and_its_expiry_from_the_spec(
        gateway: TestClient[Any, Any]) -> None:
    shown = await preview(gateway)
    assert isinstance(shown["confirmation_token"], str) and "." in shown["confirmation_token"]
    assert shown["expires_at"] == "2026-03-01T12:02:00Z"  # confirm_ttl_s: 120
    assert "confirmation_token" in shown["next_step"]


async def test_a_write_without_a_preview_read_shows_no_current_state_and_reads_nothing(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    shown = await preview(gateway, {"id": "n1", "reason": "done"}, name="archive_note")
    assert "current" not in shown
    assert shown["would_send"]["body"] == {"reason": "done"}
    assert upstream.methods() == []


async def test_write_tools_take_the_confirmation_token_as_an_optional_argument(
        gateway: TestClient[Any, Any]) -> None:
    response = await gateway.post(URL, headers=auth(WRITER), json=rpc("tools/list"))
    tools = {t["name"]: t for t in (await response.json())["result"]["tools"]}
    schema = tools["retitle_note"]["inputSchema"]
    assert schema["properties"]["confirmation_token"]["type"] == "string"
    assert "confirmation_token" not in schema["required"]
    assert tools["retitle_note"]["annotations"]["readOnlyHint"] is False


# --- execution --------------------------------------------------------------------------------


async def test_the_same_call_with_the_token_executes_the_write_once(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    shown = await preview(gateway)
    done = await confirm(gateway, shown["confirmation_token"])
    assert done["isError"] is False
    assert done["structuredContent"]["status"] == "done"
    assert done["structuredContent"]["changed"] is True
    assert done["structuredContent"]["result"] == {"id": "n1", "title": "New title",
                                                   "labels": ["a", "b"]}
    assert upstream.patch.call_count == 1
    assert orjson.loads(upstream.patch.calls.last.request.content) == {
        "title": "New title", "labels": ["a", "b"]}


async def test_a_reused_token_is_refused_and_the_write_was_sent_exactly_once(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    token = (await preview(gateway))["confirmation_token"]
    first = await confirm(gateway, token)
    second = await confirm(gateway, token)
    assert first["isError"] is False
    assert refused(second, "already used")
    assert upstream.patch.call_count == 1


@pytest.mark.parametrize("part", ["payload", "signature"])
async def test_a_tampered_token_is_refused(gateway: TestClient[Any, Any], upstream: Upstream,
                                           part: str) -> None:
    token: str = (await preview(gateway))["confirmation_token"]
    payload, _, signature = token.partition(".")
    index = len(payload) // 2 if part == "payload" else len(payload) + 1 + len(signature) // 2
    result = await confirm(gateway, flip(token, index))
    assert refused(result, "altered")
    assert not upstream.patch.called


@pytest.mark.parametrize(("waited", "executed"), [(119, True), (120, False), (3600, False)])
async def test_a_token_is_good_until_its_expiry_and_refused_after(
        gateway: TestClient[Any, Any], upstream: Upstream, clock: Clock, waited: int,
        executed: bool) -> None:
    token = (await preview(gateway))["confirmation_token"]
    clock.advance(waited)
    result = await confirm(gateway, token)
    assert (result["isError"] is False) is executed
    assert upstream.patch.called is executed
    if not executed:
        assert refused(result, "expired")


@pytest.mark.parametrize("presenter", [COLLEAGUE, OTHER_ACCOUNT],
                         ids=["another user of the account", "the same user in another account"])
async def test_a_token_presented_by_anyone_but_its_previewer_is_refused(
        gateway: TestClient[Any, Any], upstream: Upstream, presenter: str) -> None:
    token = (await preview(gateway, token=WRITER))["confirmation_token"]
    result = await confirm(gateway, token, token=presenter)
    assert refused(result, "another user or account")
    assert not upstream.patch.called


@pytest.mark.parametrize("changed", [
    {**ARGS, "notify": False},
    {"id": "n1", "title": "New title"},
    {**ARGS, "title": "Other title"},
    {**ARGS, "labels": ["b", "c"]},
    {**ARGS, "id": "n2"},
], ids=["added", "removed", "other value", "other list", "other id"])
async def test_a_token_presented_with_changed_arguments_is_refused(
        gateway: TestClient[Any, Any], upstream: Upstream, changed: dict[str, Any]) -> None:
    token = (await preview(gateway))["confirmation_token"]
    result = await confirm(gateway, token, changed)
    assert refused(result, "arguments differ")
    assert upstream.methods().count("PATCH") == 0


async def test_argument_order_does_not_matter_to_the_token(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    token = (await preview(gateway, {"id": "n1", "title": "T", "labels": ["b"]}))[
        "confirmation_token"]
    result = await confirm(gateway, token, {"labels": ["b"], "title": "T", "id": "n1"})
    assert result["isError"] is False
    assert upstream.patch.call_count == 1


async def test_a_token_for_another_tool_is_refused(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    token = (await preview(gateway))["confirmation_token"]
    result = await confirm(gateway, token, {"id": "n1"}, name="archive_note")
    assert refused(result, "retitle_note")
    assert not upstream.archive.called


@pytest.mark.parametrize(("token", "answer"), [
    (12345, "invalid params"),
    (["a.b"], "invalid params"),
    ("x" * 2048, "invalid params"),
    ("", "malformed"),
    ("no-dot-at-all", "malformed"),
    ("Zm9v.YmFy", "altered"),
    ("ünïcödé.ßig", "malformed"),
], ids=["number", "list", "2 KB", "empty", "no dot", "unsigned", "not ascii"])
async def test_a_malformed_token_is_refused_before_anything_is_sent(
        gateway: TestClient[Any, Any], upstream: Upstream, token: Any, answer: str) -> None:
    status, body = await send(gateway, "retitle_note", {**ARGS, "confirmation_token": token})
    assert status == 200
    if answer == "invalid params":
        assert body["error"]["code"] == -32602
    else:
        assert refused(body["result"], answer)
    assert upstream.methods() == []


async def test_a_write_without_its_scope_is_403_naming_the_scope(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    status, body = await send(gateway, "retitle_note", ARGS, token=READER)
    assert status == 403
    assert body["error"]["data"]["required_scopes"] == ["notes:write"]
    assert upstream.methods() == []


async def test_an_upstream_failure_on_execution_is_a_tool_error_with_its_status(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    upstream.patch.mock(return_value=httpx.Response(409, json={"message": "Edited meanwhile"}))
    token = (await preview(gateway))["confirmation_token"]
    result = await confirm(gateway, token)
    text = result["content"][0]["text"]
    assert result["isError"] is True
    assert "HTTP 409" in text and "Edited meanwhile" in text


# --- the per-account rate limit ---------------------------------------------------------------


async def test_the_third_write_within_a_minute_is_refused_saying_when_to_retry(
        gateway: TestClient[Any, Any], upstream: Upstream, clock: Clock) -> None:
    tokens = [(await preview(gateway))["confirmation_token"] for _ in range(3)]
    first = await confirm(gateway, tokens[0])
    second = await confirm(gateway, tokens[1])
    third = await confirm(gateway, tokens[2])
    assert first["isError"] is False and second["isError"] is False
    assert refused(third, "retry in 30 seconds")
    assert upstream.patch.call_count == 2
    clock.advance(30)
    later = await confirm(gateway, tokens[2])  # the refused token was not used up
    assert later["isError"] is False
    assert upstream.patch.call_count == 3


async def test_write_limits_are_per_account(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    for _ in range(2):
        token = (await preview(gateway, token=WRITER))["confirmation_token"]
        assert (await confirm(gateway, token, token=WRITER))["isError"] is False
    exhausted = (await preview(gateway, token=COLLEAGUE))["confirmation_token"]
    other = (await preview(gateway, token=OTHER_ACCOUNT))["confirmation_token"]
    same_account = await confirm(gateway, exhausted, token=COLLEAGUE)
    other_account = await confirm(gateway, other, token=OTHER_ACCOUNT)
    assert refused(same_account, "write limit")
    assert other_account["isError"] is False
    assert upstream.patch.call_count == 3


async def test_a_refused_reuse_does_not_use_up_the_write_limit(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    used = (await preview(gateway))["confirmation_token"]
    fresh = (await preview(gateway))["confirmation_token"]
    assert (await confirm(gateway, used))["isError"] is False
    assert refused(await confirm(gateway, used), "already used")  # not an execution
    second_write = await confirm(gateway, fresh)
    assert second_write["isError"] is False, second_write["content"][0]["text"]
    assert upstream.patch.call_count == 2


async def test_previews_do_not_count_against_the_write_limit(
        gateway: TestClient[Any, Any]) -> None:
    tokens = [(await preview(gateway))["confirmation_token"] for _ in range(5)]
    results = [await confirm(gateway, token) for token in tokens[:2]]
    assert [r["isError"] for r in results] == [False, False]


# --- end to end -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_the_writer_previews_and_confirms_tag_feedback_against_the_sandbox(
        mode: str) -> None:
    marker = f"e2e-{mode}".replace(".", "-")
    async with running_stack() as stack, mcp_client(
            stack.endpoint("retently"), "rtly_mcp_pat_demowriter_s3cr3t", mode) as client:
        page = await client.call_tool("list_feedback", {"limit": 1})
        assert isinstance(page.structured_content, dict)
        feedback_id = page.structured_content["items"][0]["id"]
        before = await client.call_tool("get_feedback", {"id": feedback_id})
        assert isinstance(before.structured_content, dict)
        assert marker not in (before.structured_content.get("feedbackTags") or [])

        arguments = {"id": feedback_id, "add": [marker]}
        shown = await client.call_tool("tag_feedback", arguments)
        assert shown.is_error is False and isinstance(shown.structured_content, dict)
        assert shown.structured_content["status"] == "preview"
        unchanged = await client.call_tool("get_feedback", {"id": feedback_id})
        assert isinstance(unchanged.structured_content, dict)
        assert marker not in (unchanged.structured_content.get("feedbackTags") or [])

        done = await client.call_tool("tag_feedback", {
            **arguments, "confirmation_token": shown.structured_content["confirmation_token"]})
        assert done.is_error is False and isinstance(done.structured_content, dict)
        assert done.structured_content["status"] == "done"
        after = await client.call_tool("get_feedback", {"id": feedback_id})
        assert isinstance(after.structured_content, dict)
        assert marker in after.structured_content["feedbackTags"]
