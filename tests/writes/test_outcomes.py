"""A confirmed write never lies about its outcome. Against an upstream on loopback that fails on
purpose: a request that never left is "not executed" and its token stays good; one the upstream
acted on before its answer was lost is "outcome unknown", audited as such, never "retry later";
a 2xx answer that cannot be read is a change that was applied. Every confirmed write carries an
Idempotency-Key derived from its confirmation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from bench.run import free_port
from gateway.server.app import create_app
from gateway.settings import Settings
from tests.support import MCP_HEADERS, AiohttpClient, rpc

ARGS = {"text": "call the customer back"}


class FaultyUpstream:
    """A raw HTTP server on loopback: reads each request whole, records it, then does what the
    test says: answer JSON, answer HTML, drop the connection, or never answer."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.received: list[bytes] = []
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            self.received.append(head + await reader.readexactly(length))
            if self.mode == "hang":
                with contextlib.suppress(asyncio.CancelledError):  # until the test stops it
                    await asyncio.Event().wait()
                return
            if self.mode == "ok":
                body = b'{"id": "n1"}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            elif self.mode == "html":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                             b"Content-Length: 6\r\n\r\n<html>")
            await writer.drain()  # mode "drop": nothing written, the connection just closes
        finally:
            with contextlib.suppress(ConnectionError):
                writer.close()


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyUpstream]:
    upstream = FaultyUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture
async def desk(aiohttp_client: AiohttpClient, tmp_path: Path,
               faulty: FaultyUpstream) -> TestClient[Any, Any]:
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


@pytest.mark.parametrize("mode", ["drop", "hang"])
async def test_a_write_whose_answer_was_lost_is_reported_as_outcome_unknown(
        desk: TestClient[Any, Any], faulty: FaultyUpstream, mode: str) -> None:
    faulty.mode = mode

    _, result, audit = await confirm(desk)

    text = result["content"][0]["text"]
    assert result["isError"] is True
    assert text.startswith("Outcome unknown") and "may have been applied" in text
    assert "retry later" not in text
    assert [e["outcome"] for e in audit] == ["unknown"]
    assert len(faulty.received) == 1  # the upstream did get it: once


async def test_a_write_that_never_left_changes_nothing_and_its_token_stays_good(
        desk: TestClient[Any, Any], faulty: FaultyUpstream) -> None:
    await faulty.stop()  # connection refused: nothing can have been sent

    token, result, audit = await confirm(desk)

    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("Not executed, nothing was changed")
    assert [(e["outcome"], e["reason"]) for e in audit] == [("failed", "not_sent")]
    await faulty.start()
    retried = await call(desk, {**ARGS, "confirmation_token": token})
    assert retried["isError"] is False
    assert retried["structuredContent"]["status"] == "done"


async def test_an_unreadable_2xx_answer_is_a_change_that_was_applied(
        desk: TestClient[Any, Any], faulty: FaultyUpstream) -> None:
    faulty.mode = "html"

    _, result, audit = await confirm(desk)

    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("The change was applied")
    assert [e["outcome"] for e in audit] == ["done"]


async def test_every_confirmed_write_carries_an_idempotency_key_of_its_own(
        desk: TestClient[Any, Any], faulty: FaultyUpstream) -> None:
    await confirm(desk)
    await confirm(desk)

    keys = [line.split(b":", 1)[1].strip() for request in faulty.received
            for line in request.split(b"\r\n") if line.lower().startswith(b"idempotency-key:")]
    assert len(keys) == 2 and keys[0] != keys[1]
    assert all(len(key) == 32 for key in keys)
