"""Writes a person confirms in the client's own dialog, through the endpoint: the first call of a
2026-07-28 client that declares elicitation answers `input_required` with the change in words;
the retry with the answer and the `requestState` executes once, or not at all. The state is
checked like any input (tampered, expired, replayed, another caller's: -32602); clients that
cannot ask a person keep the confirmation_token flow, unless the service requires a person.

A small spec tree of its own (tmp_path) with an injected clock; the authorization server and the
upstream are faked at the network edge.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
import structlog
from aiohttp.test_utils import TestClient

from gateway.errors import SpecError
from gateway.spec.loader import load_tree
from gateway.upstream.mock_wire import MockWire
from gateway.writes.execution import idempotency_key
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
    START,
    URL,
    WRITER,
    service,
    tokens,
)

MODERN = "2026-07-28"
TOKENS = tokens("notes:write")
ELICITATION: dict[str, Any] = {"elicitation": {"form": {}}}
SERVICE = service(["notes:write"], "{confirm_ttl_s: 120, per_account_per_minute: 2, "
                  "require_human: [email_note]}")
TOOLS = """
version: 1
tools:
  - name: retitle_note
    title: Retitle note
    kind: write
    description: Change a note's title and add labels. Previews first.
    scopes: ["notes:write"]
    input:
      id: {type: string, pattern: '^n[0-9]+$', required: true}
      title: {type: string, required: true}
      labels: {type: array, items: {type: string}}
    write:
      preview: {method: GET, path: '/notes/{id}'}
      preview_select: 'note.{id: id, title: title, labels: labels}'
    request:
      method: PATCH
      path: /notes/{id}
      body:
        title: '{title}'
        labels: {$expr: 'union(current.labels, args.labels)'}
    response: {select: note}
  - name: email_note
    title: Email note
    kind: write
    description: Email a note to its owner.
    scopes: ["notes:write"]
    input:
      id: {type: string, pattern: '^n[0-9]+$', required: true}
    write:
      irreversible: sends a real email
    request: {method: POST, path: '/notes/{id}/email', body: {}}
"""
ARGS: dict[str, Any] = {"id": "n1", "title": "New title", "labels": ["b"]}


introspection = introspection_of(TOKENS, FAR)


@dataclass
class Upstream:
    read: respx.Route
    patch: respx.Route
    email: respx.Route


@pytest.fixture
def upstream(router: respx.MockRouter) -> Upstream:
    router.post(INTROSPECT).mock(side_effect=introspection)
    read = router.get(f"https://{API}/v1/notes/n1").mock(return_value=httpx.Response(
        200, json={"note": {"id": "n1", "title": "Old title", "labels": ["a"]}}))
    patch = router.patch(f"https://{API}/v1/notes/n1").mock(return_value=httpx.Response(
        200, json={"note": {"id": "n1", "title": "New title", "labels": ["a", "b"]}}))
    email = router.post(f"https://{API}/v1/notes/n1/email").mock(
        return_value=httpx.Response(200, json={"sent": True}))
    return Upstream(read, patch, email)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    return service_tree(tmp_path, "desk", SERVICE, TOOLS)


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, specs: Path, clock: Clock, upstream: Upstream,
                  wire: MockWire) -> TestClient[Any, Any]:
    return await aiohttp_client(gateway_app(wire, specs_dir=specs, clock=clock))


async def call(client: TestClient[Any, Any], arguments: dict[str, Any] = ARGS, *,
               name: str = "retitle_note", token: str = WRITER,
               capabilities: dict[str, Any] | None = None, **retry: Any
               ) -> tuple[int, dict[str, Any]]:
    """One 2026-07-28 tools/call; `retry` adds inputResponses and requestState."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities":
                ELICITATION if capabilities is None else capabilities}
    headers = {**auth(token), "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
               "Mcp-Name": name}
    response = await client.post(URL, headers=headers, json=rpc(
        "tools/call", {"name": name, "arguments": arguments, "_meta": meta, **retry}))
    body: dict[str, Any] = await response.json()
    return response.status, body


async def asked(client: TestClient[Any, Any], arguments: dict[str, Any] = ARGS,
                **options: Any) -> dict[str, Any]:
    status, body = await call(client, arguments, **options)
    assert status == 200, body
    result: dict[str, Any] = body["result"]
    assert result["resultType"] == "input_required", result
    return result


def answer(first: dict[str, Any], action: str = "accept", confirm: bool = True
           ) -> dict[str, Any]:
    content = {"content": {"confirm": confirm}} if action == "accept" else {}
    return {"inputResponses": {"confirm": {"action": action, **content}},
            "requestState": first["requestState"]}


async def answered(client: TestClient[Any, Any], first: dict[str, Any], action: str = "accept",
                   arguments: dict[str, Any] = ARGS, **options: Any) -> tuple[int, dict[str, Any]]:
    return await call(client, arguments, **options, **answer(first, action))


def claims(state: str) -> dict[str, Any]:
    payload = state.partition(".")[0]
    decoded: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def invalid_params(status: int, body: dict[str, Any]) -> bool:
    return status == 400 and body["error"]["code"] == -32602


def text_of(result: dict[str, Any]) -> str:
    text: str = result["content"][0]["text"]
    return text


# --- the question ------------------------------------------------------------------------------


async def test_the_first_call_asks_a_person_and_sends_no_change(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    first = await asked(gateway)
    request = first["inputRequests"]["confirm"]
    assert request["method"] == "elicitation/create"
    assert request["params"]["mode"] == "form"
    assert request["params"]["requestedSchema"]["properties"]["confirm"]["type"] == "boolean"
    assert request["params"]["requestedSchema"]["required"] == ["confirm"]
    assert isinstance(first["requestState"], str)
    assert upstream.read.call_count == 1
    assert not upstream.patch.called


async def test_the_question_states_the_change_in_words(gateway: TestClient[Any, Any]) -> None:
    message = (await asked(gateway))["inputRequests"]["confirm"]["params"]["message"]
    assert message.startswith("Retitle note (retitle_note) in Desk: confirm this change.")
    assert "Target: id n1" in message
    assert "Title: Old title -> New title" in message
    assert "Labels: a -> a, b" in message
    assert "PATCH https://api.desk.test/v1/notes/n1" in message
    assert "cannot be undone" not in message
    assert "Nothing has been changed yet." in message


async def test_the_question_says_when_a_change_cannot_be_undone(
        gateway: TestClient[Any, Any]) -> None:
    message = (await asked(gateway, {"id": "n1"}, name="email_note")
               )["inputRequests"]["confirm"]["params"]["message"]
    assert "This sends a real email: it cannot be undone." in message


async def test_the_state_carries_what_a_confirmation_token_carries(
        gateway: TestClient[Any, Any]) -> None:
    sealed = claims((await asked(gateway))["requestState"])
    assert sealed["t"] == "retitle_note"
    assert (sealed["s"], sealed["a"]) == ("u_writer", "acc_a")
    assert sealed["e"] == int(START.timestamp()) + 120
    assert sealed["p"] == "elicitation"
    assert {"d", "n"} <= sealed.keys()


# --- the answer --------------------------------------------------------------------------------


async def test_accept_executes_the_change_once_with_the_derived_idempotency_key(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    first = await asked(gateway)
    with structlog.testing.capture_logs() as logs:
        status, body = await answered(gateway, first)
    assert status == 200
    assert body["result"]["isError"] is False
    assert body["result"]["structuredContent"]["status"] == "done"
    assert upstream.patch.call_count == 1
    sent = upstream.patch.calls.last.request
    assert orjson.loads(sent.content) == {"title": "New title", "labels": ["a", "b"]}
    nonce = claims(first["requestState"])["n"]
    assert sent.headers["Idempotency-Key"] == idempotency_key(nonce)
    records = [e for e in logs if e["event"] == "audit"]
    assert [(r["phase"], r["outcome"]) for r in records] == [("execute", "sending"),
                                                             ("execute", "done")]
    assert {r["confirmed_by"] for r in records} == {"elicitation"}


@pytest.mark.parametrize(("action", "words"), [("decline", "declined"),
                                               ("cancel", "without answering")])
async def test_decline_or_cancel_executes_nothing_and_says_so(
        gateway: TestClient[Any, Any], upstream: Upstream, action: str, words: str) -> None:
    first = await asked(gateway)
    with structlog.testing.capture_logs() as logs:
        status, body = await answered(gateway, first, action)
    assert status == 200
    assert body["result"]["isError"] is True
    assert text_of(body["result"]).startswith("Not executed.")
    assert words in text_of(body["result"])
    assert not upstream.patch.called
    record = next(e for e in logs if e["event"] == "audit")
    assert (record["outcome"], record["reason"], record["confirmed_by"]) == (
        "declined", action, "elicitation")


async def test_an_unticked_confirmation_executes_nothing(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    first = await asked(gateway)
    _, body = await call(gateway, requestState=first["requestState"], inputResponses={
        "confirm": {"action": "accept", "content": {"confirm": False}}})
    assert body["result"]["isError"] is True and "did not confirm" in text_of(body["result"])
    assert not upstream.patch.called


@pytest.mark.parametrize("responses", [{}, {"other": {"action": "accept", "content": {}}},
                                       {"confirm": {"action": "accept", "content": {}}}])
async def test_a_missing_answer_is_asked_again_not_refused(
        gateway: TestClient[Any, Any], upstream: Upstream, responses: dict[str, Any]) -> None:
    first = await asked(gateway)
    again = await asked(gateway, inputResponses=responses, requestState=first["requestState"])
    assert "confirm" in again["inputRequests"]
    assert not upstream.patch.called


# --- the state is attacker-controlled input --------------------------------------------------


@pytest.mark.parametrize("part", ["payload", "signature"])
async def test_a_tampered_state_is_refused(gateway: TestClient[Any, Any], upstream: Upstream,
                                           part: str) -> None:
    first = await asked(gateway)
    payload, _, signature = first["requestState"].partition(".")
    if part == "payload":
        forged = orjson.loads(base64.urlsafe_b64decode(payload + "=" * 4)) | {"s": "u_boss"}
        payload = base64.urlsafe_b64encode(orjson.dumps(forged)).rstrip(b"=").decode()
    else:
        signature = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert invalid_params(*await call(gateway, **{**answer(first),
                                                  "requestState": f"{payload}.{signature}"}))
    assert not upstream.patch.called


async def test_a_replayed_state_is_refused_and_the_change_was_made_once(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    first = await asked(gateway)
    assert (await answered(gateway, first))[1]["result"]["isError"] is False
    assert invalid_params(*await answered(gateway, first))
    assert upstream.patch.call_count == 1


async def test_a_declined_state_cannot_be_accepted_afterwards(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    first = await asked(gateway)
    await answered(gateway, first, "decline")
    assert invalid_params(*await answered(gateway, first))
    assert not upstream.patch.called


async def test_an_expired_state_is_refused(gateway: TestClient[Any, Any], upstream: Upstream,
                                           clock: Clock) -> None:
    first = await asked(gateway)
    clock.advance(121)
    status, body = await answered(gateway, first)
    assert invalid_params(status, body)
    assert "expired" in body["error"]["message"]
    assert not upstream.patch.called


@pytest.mark.parametrize("other", [COLLEAGUE, OTHER_ACCOUNT])
async def test_another_callers_state_is_refused(gateway: TestClient[Any, Any],
                                                upstream: Upstream, other: str) -> None:
    first = await asked(gateway)
    assert invalid_params(*await answered(gateway, first, token=other))
    assert not upstream.patch.called


async def test_a_state_for_other_arguments_or_another_tool_is_refused(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    first = await asked(gateway)
    assert invalid_params(*await answered(gateway, first,
                                          arguments={**ARGS, "title": "Other title"}))
    assert invalid_params(*await answered(gateway, first, arguments={"id": "n1"},
                                          name="email_note"))
    assert not upstream.patch.called and not upstream.email.called


async def test_a_state_is_no_confirmation_token(gateway: TestClient[Any, Any],
                                                upstream: Upstream) -> None:
    state = (await asked(gateway))["requestState"]
    status, body = await call(gateway, {**ARGS, "confirmation_token": state}, capabilities={})
    assert status == 200 and body["result"]["isError"] is True
    assert "not from this server" in text_of(body["result"])
    assert not upstream.patch.called


async def test_person_confirmed_writes_share_the_accounts_write_limit(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    for _ in range(2):  # per_account_per_minute: 2
        assert (await answered(gateway, await asked(gateway)))[1]["result"]["isError"] is False
    status, body = await answered(gateway, await asked(gateway))
    assert body["result"]["isError"] is True and "write limit" in text_of(body["result"])
    # The model holds no token on this path: it is told to call again, not to reuse one.
    assert "person will be asked again" in text_of(body["result"])
    assert "token" not in text_of(body["result"])
    assert upstream.patch.call_count == 2


# --- clients that cannot ask a person ----------------------------------------------------------


async def test_a_2026_client_without_elicitation_keeps_the_confirmation_token_flow(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    status, body = await call(gateway, capabilities={"sampling": {}})
    shown = body["result"]["structuredContent"]
    assert status == 200 and body["result"]["resultType"] == "complete"
    assert shown["status"] == "preview" and "confirmation_token" in shown
    _, done = await call(gateway, {**ARGS, "confirmation_token": shown["confirmation_token"]},
                         capabilities={})
    assert done["result"]["structuredContent"]["status"] == "done"
    assert upstream.patch.call_count == 1


async def test_a_2025_client_keeps_the_confirmation_token_flow(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    response = await gateway.post(URL, headers=auth(WRITER), json=rpc(
        "tools/call", {"name": "retitle_note", "arguments": ARGS}))
    shown = (await response.json())["result"]["structuredContent"]
    assert shown["status"] == "preview" and "confirmation_token" in shown
    response = await gateway.post(URL, headers=auth(WRITER), json=rpc(
        "tools/call", {"name": "retitle_note",
                       "arguments": {**ARGS, "confirmation_token": shown["confirmation_token"]}}))
    assert (await response.json())["result"]["structuredContent"]["status"] == "done"
    assert upstream.patch.call_count == 1


# --- writes.require_human ----------------------------------------------------------------------


@pytest.mark.parametrize("capabilities", [{}, {"sampling": {}, "roots": {}},
                                          {"elicitation": {"url": {}}}])
async def test_require_human_refuses_a_client_that_cannot_ask_and_says_why(
        gateway: TestClient[Any, Any], upstream: Upstream, capabilities: dict[str, Any]) -> None:
    status, body = await call(gateway, {"id": "n1"}, name="email_note",
                              capabilities=capabilities)
    assert status == 200 and body["result"]["isError"] is True
    assert "elicitation" in text_of(body["result"])
    assert "Nothing was read or changed" in text_of(body["result"])
    assert not upstream.email.called


async def test_require_human_refuses_a_2025_client_and_any_confirmation_token(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    for arguments in ({"id": "n1"}, {"id": "n1", "confirmation_token": "a.b"}):
        response = await gateway.post(URL, headers=auth(WRITER), json=rpc(
            "tools/call", {"name": "email_note", "arguments": arguments}))
        result = (await response.json())["result"]
        assert result["isError"] is True and "person" in text_of(result)
    assert not upstream.email.called


async def test_require_human_works_for_a_client_that_asks(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    first = await asked(gateway, {"id": "n1"}, name="email_note")
    status, body = await answered(gateway, first, arguments={"id": "n1"}, name="email_note")
    assert body["result"]["structuredContent"]["status"] == "done"
    assert upstream.email.call_count == 1


@pytest.mark.parametrize("named", ["unknown_tool", "read_note"])
def test_require_human_may_name_only_write_tools_of_the_service(tmp_path: Path,
                                                                 named: str) -> None:
    service = SERVICE.replace("require_human: [email_note]", f"require_human: [{named}]")
    tools = TOOLS + """
  - name: read_note
    kind: read
    description: Read a note.
    input: {id: {type: string, required: true}}
    request: {method: GET, path: '/notes/{id}'}
"""
    with pytest.raises(SpecError) as refused:
        load_tree(service_tree(tmp_path, "desk", service, tools), {})
    assert f"writes.require_human names {named!r}" in str(refused.value)
