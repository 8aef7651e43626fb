"""What a person may change in the confirmation dialog (`write.editable`): the form offers the
editable arguments holding the values the call gave (a list as a choice of its items, all
ticked); what comes back is sent only after the same checks as the call's own arguments, and a
change that fails them sends nothing and leaves the confirmation unused.

Through the endpoint, with a spec tree of its own; the upstream is faked at the network edge.
"""

from __future__ import annotations

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
from tests.support import AiohttpClient, Clock, gateway_app, service_tree
from tests.writes.desk import API, INTROSPECT, START
from tests.writes.test_elicitation import SERVICE, call, introspection, text_of

TOOLS = """
version: 1
tools:
  - name: send_note
    title: Send note
    kind: write
    description: Email a note to people.
    scopes: ["notes:write"]
    input:
      id: {type: string, pattern: '^n[0-9]+$', required: true}
      subject: {type: string, minLength: 1, maxLength: 30, required: true,
                description: The email subject}
      urgent: {type: boolean, default: false}
      recipients:
        type: array
        minItems: 1
        required: true
        items:
          type: object
          properties:
            email: {type: string, format: email, required: true}
            name: {type: string}
    write:
      irreversible: sends a real email
      editable: [subject, urgent, recipients]
    request:
      method: POST
      path: /notes/{id}/send
      body: {subject: '{subject}', urgent: '{urgent}', to: {$expr: 'args.recipients[].email'}}
  - name: email_note
    kind: write
    description: Email a note to its owner.
    scopes: ["notes:write"]
    input: {id: {type: string, required: true}}
    request: {method: POST, path: '/notes/{id}/email', body: {}}
"""
ARGS: dict[str, Any] = {
    "id": "n1", "subject": "Quarterly notes",
    "recipients": [{"email": "ana@example.com", "name": "Ana"},
                   {"email": "bo@example.com", "name": "Bo"},
                   {"email": "cy@example.com"}]}
EVERYONE = ["ana@example.com", "bo@example.com", "cy@example.com"]


@pytest.fixture
def sent(router: respx.MockRouter) -> respx.Route:
    router.post(INTROSPECT).mock(side_effect=introspection)
    return router.post(f"https://{API}/v1/notes/n1/send").mock(
        return_value=httpx.Response(200, json={"sent": True}))


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, tmp_path: Path, sent: respx.Route,
                  wire: MockWire) -> TestClient[Any, Any]:
    specs = service_tree(tmp_path, "desk", SERVICE.replace("[email_note]", "[]"), TOOLS)
    return await aiohttp_client(gateway_app(wire, specs_dir=specs, clock=Clock(START)))


async def ask(gateway: TestClient[Any, Any]) -> dict[str, Any]:
    status, body = await call(gateway, ARGS, name="send_note")
    assert status == 200 and body["result"]["resultType"] == "input_required", body
    result: dict[str, Any] = body["result"]
    return result


async def reply(gateway: TestClient[Any, Any], first: dict[str, Any],
                **content: Any) -> dict[str, Any]:
    answers = {"confirm": {"action": "accept", "content": {"confirm": True, **content}}}
    status, body = await call(gateway, ARGS, name="send_note", inputResponses=answers,
                              requestState=first["requestState"])
    assert status == 200, body
    result: dict[str, Any] = body["result"]
    return result


def sent_body(route: respx.Route) -> Any:
    return orjson.loads(route.calls.last.request.content)


async def test_the_form_offers_the_editable_arguments_holding_the_values_given(
        gateway: TestClient[Any, Any], sent: respx.Route) -> None:
    request = (await ask(gateway))["inputRequests"]["confirm"]["params"]
    fields = request["requestedSchema"]["properties"]
    assert fields["subject"] == {"title": "Subject", "description": "The email subject",
                                 "type": "string", "minLength": 1, "maxLength": 30,
                                 "default": "Quarterly notes"}
    assert fields["urgent"]["type"] == "boolean" and fields["urgent"]["default"] is False
    assert fields["recipients"]["type"] == "array"
    assert fields["recipients"]["items"] == {"type": "string", "enum": EVERYONE}
    assert fields["recipients"]["default"] == EVERYONE
    assert fields["recipients"]["minItems"] == 1
    assert request["requestedSchema"]["required"] == ["confirm"]
    assert "You can change subject, urgent and recipients in the form first" in request["message"]
    assert not sent.called


async def test_what_the_person_changed_is_what_is_sent_and_the_model_is_told(
        gateway: TestClient[Any, Any], sent: respx.Route) -> None:
    first = await ask(gateway)
    with structlog.testing.capture_logs() as logs:
        result = await reply(gateway, first, subject="Q3 notes", urgent=True,
                             recipients=["ana@example.com", "cy@example.com"])
    assert result["isError"] is False, result
    assert result["structuredContent"]["edited_in_dialog"] == ["subject", "urgent", "recipients"]
    assert sent.call_count == 1
    assert sent_body(sent) == {"subject": "Q3 notes", "urgent": True,
                               "to": ["ana@example.com", "cy@example.com"]}
    done = [e for e in logs if e["event"] == "audit" and e["outcome"] == "done"]
    assert done[0]["edited"] == ["subject", "urgent", "recipients"]


async def test_an_answer_that_changes_nothing_sends_the_call_as_given(
        gateway: TestClient[Any, Any], sent: respx.Route) -> None:
    result = await reply(gateway, await ask(gateway), subject="Quarterly notes",
                         recipients=EVERYONE)
    assert result["isError"] is False
    assert "edited_in_dialog" not in result["structuredContent"]
    assert sent_body(sent) == {"subject": "Quarterly notes", "urgent": False, "to": EVERYONE}


@pytest.mark.parametrize(("content", "said"), [
    ({"subject": "x" * 31}, "subject"),
    ({"subject": ""}, "subject"),
    ({"subject": 7}, "subject"),
    ({"recipients": []}, "recipients"),
    ({"recipients": ["eve@example.com"]}, "not one of the offered choices"),
    ({"recipients": "ana@example.com"}, "not a list of the offered choices"),
    ({"urgent": "yes"}, "urgent"),
])
async def test_a_change_that_fails_the_checks_sends_nothing_and_keeps_the_confirmation(
        gateway: TestClient[Any, Any], sent: respx.Route, content: dict[str, Any],
        said: str) -> None:
    first = await ask(gateway)
    result = await reply(gateway, first, **content)
    assert result["isError"] is True
    assert "Not executed, nothing was sent" in text_of(result) and said in text_of(result)
    assert not sent.called
    # The state was not used up: a good answer with it still makes the change, once.
    assert (await reply(gateway, first, subject="Fine"))["isError"] is False
    assert sent.call_count == 1


async def test_a_tool_without_editable_arguments_offers_only_the_confirmation(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await call(gateway, {"id": "n1"}, name="email_note")
    schema = body["result"]["inputRequests"]["confirm"]["params"]["requestedSchema"]
    assert list(schema["properties"]) == ["confirm"]
    assert "You can change" not in body["result"]["inputRequests"]["confirm"]["params"]["message"]


@pytest.mark.parametrize(("editable", "said"), [
    ("[nope]", "'nope', which is not in `input`"),
    ("[meta]", "'meta' is not a string, number, integer, boolean or array"),
])
def test_editable_names_arguments_a_form_can_hold(tmp_path: Path, editable: str,
                                                  said: str) -> None:
    tools = TOOLS.replace("editable: [subject, urgent, recipients]", f"editable: {editable}")
    tools = tools.replace("      urgent: {type: boolean, default: false}\n",
                          "      urgent: {type: boolean, default: false}\n"
                          "      meta: {type: object}\n")
    with pytest.raises(SpecError) as refused:
        load_tree(service_tree(tmp_path, "desk", SERVICE, tools), {})
    assert said in str(refused.value)
