"""A confirmed write never lies about its outcome. Against an upstream on loopback that fails on
purpose: a request that never left is "not executed" and its token stays good; one the upstream
acted on before its answer was lost is "outcome unknown", audited as such, never "retry later";
a 2xx answer that cannot be read is a change that was applied. Every confirmed write carries an
Idempotency-Key derived from its confirmation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from gateway.server.app import create_app
from gateway.settings import Settings
from tests.faults import Fault, FaultServer, hang, json_answer, raw_answer, reset, running
from tests.support import MCP_HEADERS, AiohttpClient, rpc

ARGS = {"text": "call the customer back"}


@pytest.fixture
async def faulty() -> AsyncIterator[FaultServer]:
    async with running(FaultServer()) as upstream:
        yield upstream


@pytest.fixture
async def desk(aiohttp_client: AiohttpClient, tmp_path: Path,
               faulty: FaultServer) -> TestClient[Any, Any]:
    folder = tmp_path / "desk"
    folder.mkdir()
    (folder / "service.yaml").write_text(
        f"name: desk\ntitle: Desk\nendpoint: /desk/mcp\n"
        f"upstream: {{base_url: 'http://127.0.0.1:{faulty.port}'}}\n"
        "auth: {resolver: passthrough, default_scopes: [notes]}\nscopes: [{name: notes}]\n")
    (folder / "tools.yaml").write_text(
        "tools:\n  - name: add_note\n    kind: write\n    description: Add a note.\n"
        "    scopes: [notes]\n    input: {text: {type: string, required: true}}\n"
        "    request: {method: POST, path: /notes, body: {text: '{text}'}}\n")
    return await aiohttp_client(create_app(Settings(specs_dir=tmp_path, log_json=True,
                                                    upstream_timeout_s=0.5)))


async def call(desk: TestClient[Any, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    answer = await desk.post("/desk/mcp", json=rpc("tools/call", {
        "name": "add_note", "arguments": arguments}),
        headers={**MCP_HEADERS, "Authorization": "Bearer desk_token"})
    result: dict[str, Any] = (await answer.json())["result"]
    return result


async def confirm(desk: TestClient[Any, Any]) -> tuple[str, dict[str, Any], list[Any]]:
    token = (await call(desk, ARGS))["structuredContent"]["confirmation_token"]
    with capture_logs() as events:
        result = await call(desk, {**ARGS, "confirmation_token": token})
    audit = [e for e in events if e.get("event") == "audit"]
    return token, result, audit


@pytest.mark.parametrize("fault", [reset, hang], ids=["reset", "hang"])
async def test_a_write_whose_answer_was_lost_is_reported_as_outcome_unknown(
        desk: TestClient[Any, Any], faulty: FaultServer, fault: Fault) -> None:
    faulty.plan("/notes", fault)

    _, result, audit = await confirm(desk)

    text = result["content"][0]["text"]
    assert result["isError"] is True
    assert text.startswith("Outcome unknown") and "may have been applied" in text
    assert "retry later" not in text
    assert [e["outcome"] for e in audit] == ["sending", "unknown"]
    assert faulty.count("/notes") == 1  # the upstream did get it: once


async def test_a_write_that_never_left_changes_nothing_and_its_token_stays_good(
        desk: TestClient[Any, Any], faulty: FaultServer) -> None:
    await faulty.stop()  # connection refused: nothing can have been sent

    token, result, audit = await confirm(desk)

    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("Not executed, nothing was changed")
    assert [(e["outcome"], e["reason"]) for e in audit] == [("sending", None),
                                                            ("failed", "not_sent")]
    await faulty.start()
    retried = await call(desk, {**ARGS, "confirmation_token": token})
    assert retried["isError"] is False
    assert retried["structuredContent"]["status"] == "done"


async def test_an_unreadable_2xx_answer_is_a_change_that_was_applied(
        desk: TestClient[Any, Any], faulty: FaultServer) -> None:
    faulty.plan("/notes", raw_answer(200, b"<html>", {"Content-Type": "text/html"}))

    _, result, audit = await confirm(desk)

    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("The change was applied")
    assert [e["outcome"] for e in audit] == ["sending", "done"]


async def test_every_confirmed_write_carries_an_idempotency_key_of_its_own(
        desk: TestClient[Any, Any], faulty: FaultServer) -> None:
    await confirm(desk)
    await confirm(desk)

    keys = [request.headers["idempotency-key"] for request in faulty.received]
    assert len(keys) == 2 and keys[0] != keys[1]
    assert all(len(key) == 32 for key in keys)


@pytest.mark.parametrize(("fault", "told"), [
    (reset, "outcome is not known"),
    (json_answer({"id": "n1"}), "that change was applied: do not repeat it"),
    (json_answer({"message": "Bad"}, 422), "that change was not applied; preview the change"),
], ids=["answer lost", "done", "refused upstream"])
async def test_a_used_token_sent_again_is_told_what_became_of_its_first_use(
        desk: TestClient[Any, Any], faulty: FaultServer, fault: Fault, told: str) -> None:
    """Sent again after a lost answer (a dead replica, a broken connection), a token must not
    be answered "preview the change again" when the change may have been applied."""
    faulty.plan("/notes", fault)
    token, _, _ = await confirm(desk)

    again = await call(desk, {**ARGS, "confirmation_token": token})

    text = again["content"][0]["text"]
    assert again["isError"] is True and "already used" in text
    assert told in text
    assert ("preview the change again" in text) == (told.endswith("preview the change"))
    assert faulty.count("/notes") == 1
