"""Tools and prompts that ask their client for input (`input_required`), through the endpoint:
round by round, only what the client declared it can answer, answers in templates, and the
requestState checked like any input. A spec tree of its own; nothing reaches an upstream.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.errors import SpecError
from gateway.spec.loader import load_tree
from gateway.upstream.mock_wire import MockWire
from tests.support import MCP_HEADERS, AiohttpClient, Clock, gateway_app, rpc, service_tree

URL = "/quiz/mcp"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODERN = "2026-07-28"
EVERYTHING: dict[str, Any] = {"elicitation": {}, "sampling": {}, "roots": {"listChanged": True}}

SERVICE = """
version: 1
name: quiz
title: Quiz
endpoint: /quiz/mcp
upstream: {base_url: 'https://api.quiz.test'}
auth: {required: false}
writes: {confirm_ttl_s: 60}
"""
TOOLS = """
version: 1
tools:
  - name: greet
    kind: meta
    description: Asks a name, then a colour, then greets.
    input:
      lang: {type: string, enum: [en, fr], default: en}
    input_required:
      - who:
          method: elicitation/create
          params:
            message: 'Your name ({lang})?'
            requestedSchema: {type: object, properties: {name: {type: string}}, required: [name]}
        model:
          method: sampling/createMessage
          params:
            messages: [{role: user, content: {type: text, text: Say hi}}]
            maxTokens: 10
      - colour:
          method: elicitation/create
          params:
            message: "{input.who.name ?? 'Friend'}, your colour?"
            requestedSchema: {type: object, properties: {colour: {type: string}}}
    result:
      name: "{input.who.name ?? 'nobody'}"
      colour: "{input.colour.colour ?? 'none'}"
      model: "{input.model ?? 'silent'}"
  - name: needs_roots
    kind: meta
    description: Cannot run without the client's roots.
    input_required:
      - roots: {method: roots/list, required: true}
    result: {roots: "{input.roots.uri ?? 'none'}"}
prompts:
  - name: topic
    arguments: [{name: tone, required: true}]
    input_required:
      - subject:
          method: elicitation/create
          params:
            message: What about?
            requestedSchema: {type: object, properties: {subject: {type: string}}}
    messages:
      - text: "Write, {tone}, about {input.subject.subject ?? 'anything'}."
"""


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, tmp_path: Path, clock: Clock,
                  wire: MockWire) -> TestClient[Any, Any]:
    specs = service_tree(tmp_path, "quiz", SERVICE, TOOLS)
    return await aiohttp_client(gateway_app(wire, specs_dir=specs, clock=clock))


async def call(client: TestClient[Any, Any], method: str = "tools/call", name: str = "greet",
               capabilities: dict[str, Any] | None = None, **params: Any
               ) -> tuple[int, dict[str, Any]]:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities":
                EVERYTHING if capabilities is None else capabilities}
    headers = {**MCP_HEADERS, "MCP-Protocol-Version": MODERN, "Mcp-Method": method,
               "Mcp-Name": name}
    body = {"name": name, "_meta": meta, **params}
    if method == "tools/call":
        body.setdefault("arguments", {})
    response = await client.post(URL, headers=headers, json=rpc(method, body))
    answer: dict[str, Any] = await response.json()
    return response.status, answer


def accept(**content: Any) -> dict[str, Any]:
    return {"action": "accept", "content": content}


SAMPLED = {"role": "assistant", "content": {"type": "text", "text": "hi!"}, "model": "m",
           "stopReason": "endTurn"}


async def test_rounds_are_asked_in_turn_and_their_answers_fill_the_result(
        gateway: TestClient[Any, Any]) -> None:
    _, first = await call(gateway)
    asked = first["result"]
    assert asked["resultType"] == "input_required"
    assert set(asked["inputRequests"]) == {"who", "model"}
    assert asked["inputRequests"]["who"]["params"]["message"] == "Your name (en)?"
    _, second = await call(gateway, inputResponses={"who": accept(name="Ada"), "model": SAMPLED},
                           requestState=asked["requestState"])
    again = second["result"]
    assert set(again["inputRequests"]) == {"colour"}
    assert again["inputRequests"]["colour"]["params"]["message"] == "Ada, your colour?"
    assert again["requestState"] != asked["requestState"]
    _, third = await call(gateway, inputResponses={"colour": accept(colour="teal")},
                          requestState=again["requestState"])
    assert third["result"]["resultType"] == "complete"
    assert third["result"]["structuredContent"] == {"name": "Ada", "colour": "teal",
                                                    "model": "hi!"}


async def test_only_what_the_client_declared_is_asked(gateway: TestClient[Any, Any]) -> None:
    _, body = await call(gateway, capabilities={"sampling": {}})
    assert set(body["result"]["inputRequests"]) == {"model"}
    _, body = await call(gateway, capabilities={"elicitation": {"url": {}}})
    assert body["result"]["structuredContent"]["name"] == "nobody"  # URL mode only: no form


async def test_a_missing_answer_is_asked_again(gateway: TestClient[Any, Any]) -> None:
    _, first = await call(gateway)
    _, again = await call(gateway, inputResponses={"who": accept(name="Ada"), "extra": accept()},
                          requestState=first["result"]["requestState"])
    assert set(again["result"]["inputRequests"]) == {"model"}


async def test_a_declined_question_leaves_its_answer_absent(
        gateway: TestClient[Any, Any]) -> None:
    _, first = await call(gateway, capabilities={"elicitation": {}})
    _, second = await call(gateway, capabilities={"elicitation": {}},
                           inputResponses={"who": {"action": "decline"}},
                           requestState=first["result"]["requestState"])
    assert second["result"]["inputRequests"]["colour"]["params"]["message"] == (
        "Friend, your colour?")


async def test_a_client_that_declares_nothing_gets_the_result_without_questions(
        gateway: TestClient[Any, Any]) -> None:
    _, body = await call(gateway, capabilities={})
    assert body["result"]["structuredContent"] == {"name": "nobody", "colour": "none",
                                                   "model": "silent"}
    response = await gateway.post(URL, headers=MCP_HEADERS, json=rpc(
        "tools/call", {"name": "greet", "arguments": {}}))
    assert (await response.json())["result"]["structuredContent"]["name"] == "nobody"


async def test_a_required_question_the_client_cannot_answer_refuses_the_call(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await call(gateway, name="needs_roots", capabilities={"sampling": {}})
    assert (status, body["error"]["code"]) == (400, -32021)
    assert body["error"]["data"] == {"requiredCapabilities": {"roots": {}}}
    response = await gateway.post(URL, headers=MCP_HEADERS, json=rpc(
        "tools/call", {"name": "needs_roots", "arguments": {}}))
    assert (response.status, (await response.json())["error"]["code"]) == (200, -32602)


@pytest.mark.parametrize("change", ["tampered", "arguments", "tool", "expired", "not a string"])
async def test_a_state_that_fails_its_checks_is_refused(gateway: TestClient[Any, Any],
                                                         clock: Clock, change: str) -> None:
    _, first = await call(gateway)
    state: Any = first["result"]["requestState"]
    params: dict[str, Any] = {"inputResponses": {"who": accept(name="Ada"), "model": SAMPLED}}
    name = "greet"
    if change == "tampered":
        state += "-TAMPERED"
    elif change == "arguments":
        params["arguments"] = {"lang": "fr"}
    elif change == "tool":
        name = "needs_roots"
        params["_meta"] = None
    elif change == "expired":
        clock.advance(61)
    else:
        state = 42
    status, body = await call(gateway, name=name,
                              **{k: v for k, v in params.items() if v is not None},
                              requestState=state)
    assert (status, body["error"]["code"]) == (400, -32602)


async def test_a_prompt_asks_before_it_renders(gateway: TestClient[Any, Any]) -> None:
    _, first = await call(gateway, "prompts/get", "topic", arguments={"tone": "briefly"})
    asked = first["result"]
    assert asked["resultType"] == "input_required"
    _, done = await call(gateway, "prompts/get", "topic", arguments={"tone": "briefly"},
                         inputResponses={"subject": accept(subject="owls")},
                         requestState=asked["requestState"])
    assert done["result"]["messages"][0]["content"]["text"] == "Write, briefly, about owls."


async def test_a_prompts_state_does_not_pass_for_a_tools(gateway: TestClient[Any, Any]) -> None:
    _, first = await call(gateway, "prompts/get", "topic", arguments={"tone": "x"})
    status, body = await call(gateway, requestState=first["result"]["requestState"])
    assert (status, body["error"]["code"]) == (400, -32602)


async def test_lists_never_answer_input_required(gateway: TestClient[Any, Any]) -> None:
    for method in ("tools/list", "prompts/list"):
        _, body = await call(gateway, method, "")
        assert body["result"]["resultType"] == "complete"


@pytest.mark.parametrize(("declared", "problem"), [
    ("input_required: [{a: {method: elicitation/create, params: {message: hi}}}]",
     "requestedSchema"),
    ("input_required: [{a: {method: roots/list}}, {a: {method: roots/list}}]",
     "used in two rounds"),
    ("input_required: [{a: {method: roots/list, params: {x: '{input.b}'}}}, "
     "{b: {method: roots/list}}]", "{input.b} names no input request answered by then"),
    ("input_required: [{a: {method: roots/list}}]\n    result: {x: '{input.zz}'}",
     "{input.zz} names no input request"),
])
def test_declarations_are_checked_at_load(tmp_path: Path, declared: str, problem: str) -> None:
    tools = f"""
version: 1
tools:
  - name: probe
    kind: meta
    description: A probe.
    {declared}
"""
    if "result:" not in declared:
        tools += "    result: {}\n"
    with pytest.raises(SpecError) as refused:
        load_tree(service_tree(tmp_path, "quiz", SERVICE, tools), {})
    assert problem in str(refused.value)


def test_a_write_tool_cannot_declare_input_required(tmp_path: Path) -> None:
    tools = """
version: 1
tools:
  - name: probe
    kind: write
    description: A write.
    input_required: [{a: {method: roots/list}}]
    request: {method: POST, path: /x}
"""
    with pytest.raises(SpecError) as refused:
        load_tree(service_tree(tmp_path, "quiz", SERVICE, tools), {})
    assert "asks for its confirmation itself" in str(refused.value)
