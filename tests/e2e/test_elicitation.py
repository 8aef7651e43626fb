"""Writes a person confirms, end to end: the official Python SDK client (2026-07-28, with an
elicitation callback standing for the person) against the gateway and the sandbox upstream. One
`call_tool` asks the question and, on accept, makes the change; on decline, nothing changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import types
from mcp.client.context import ClientRequestContext

from tests.e2e.stack import Stack, mcp_client, running_stack

WRITER = "rtly_mcp_pat_demowriter_s3cr3t"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack() as running:
        yield running


class Person:
    """Answers every confirmation the same way, and keeps what it was asked."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.asked: list[types.ElicitRequestParams] = []

    async def __call__(self, context: ClientRequestContext,
                       params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params)
        if self.action == "accept":
            return types.ElicitResult(action="accept", content={"confirm": True})
        return types.ElicitResult(action="decline")


def data(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content
    content: dict[str, Any] = result.structured_content
    return content


async def notes_of(stack: Stack, target: str) -> list[str]:
    async with mcp_client(stack.endpoint("retently"), WRITER, "2026-07-28") as client:
        feedback = data(await client.call_tool("get_feedback", {"id": target}))
    return [note["content"] for note in feedback.get("notes") or []]


async def first_feedback(stack: Stack) -> str:
    async with mcp_client(stack.endpoint("retently"), WRITER, "2026-07-28") as client:
        target: str = data(await client.call_tool("list_feedback", {"limit": 1}))["items"][0]["id"]
    return target


async def test_accepting_in_the_clients_dialog_makes_the_change_in_one_call(
        stack: Stack) -> None:
    target = await first_feedback(stack)
    person = Person("accept")
    async with mcp_client(stack.endpoint("retently"), WRITER, "2026-07-28", person) as client:
        done = data(await client.call_tool("add_note", {"id": target,
                                                        "content": "Called back, all good."}))
    assert done["status"] == "done" and done["changed"] is True
    assert len(person.asked) == 1
    message = person.asked[0].message
    assert message.startswith("Add note (add_note) in Retently: confirm this change.")
    assert "Called back, all good." in message
    assert "Called back, all good." in await notes_of(stack, target)


async def test_declining_in_the_clients_dialog_changes_nothing(stack: Stack) -> None:
    target = await first_feedback(stack)
    person = Person("decline")
    async with mcp_client(stack.endpoint("retently"), WRITER, "2026-07-28", person) as client:
        result = await client.call_tool("add_note", {"id": target, "content": "Never sent."})
    assert result.is_error is True
    text = result.content[0]
    assert isinstance(text, types.TextContent) and "declined" in text.text
    assert len(person.asked) == 1
    assert "Never sent." not in await notes_of(stack, target)


async def test_a_client_without_a_dialog_still_previews_with_a_token(stack: Stack) -> None:
    target = await first_feedback(stack)
    async with mcp_client(stack.endpoint("retently"), WRITER, "2026-07-28") as client:
        shown = data(await client.call_tool("add_note", {"id": target, "content": "Later."}))
    assert shown["status"] == "preview" and "confirmation_token" in shown


async def test_the_person_can_rewrite_the_email_before_it_is_sent(stack: Stack) -> None:
    target = await first_feedback(stack)
    asked: list[Any] = []

    async def person(context: ClientRequestContext,
                     params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept", content={
            "confirm": True, "body": "Thank you. A colleague will call you tomorrow."})

    async with mcp_client(stack.endpoint("retently"), WRITER, "2026-07-28", person) as client:
        done = data(await client.call_tool("reply_feedback", {
            "id": target, "body": "Thanks, we are on it."}))
        replies = data(await client.call_tool("get_feedback_replies", {"id": target}))
    assert done["status"] == "done" and done["edited_in_dialog"] == ["body"]
    fields = asked[0].requested_schema["properties"]
    assert fields["body"]["default"] == "Thanks, we are on it."
    assert fields["subject"]["default"] == "Re: your feedback"
    bodies = str(replies)
    assert "A colleague will call you tomorrow." in bodies
    assert "Thanks, we are on it." not in bodies
