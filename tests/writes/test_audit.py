"""The audit log: one chained JSON line per write phase, holding no token and no raw argument,
under our own request id with the client's kept apart, and `mcp-gateway audit verify FILE`
telling an intact chain from a changed or shortened one. (Attacks on the chain itself, rotation
and concurrent appenders: test_audit_chain.py.)

A small spec tree of its own (tmp_path); the authorization server and the upstream are faked at
the network edge.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from gateway.server.cli import main
from gateway.upstream.mock_wire import MockWire
from gateway.writes.audit import GENESIS
from gateway.writes.confirmations import arguments_digest
from tests.support import auth, gateway_app, rpc, service_tree

URL = "/desk/mcp"
API = "https://api.desk.test"
INTROSPECT = "https://auth.desk.test/introspect"
WRITER = "desk_writer_bearer_9f3k2"
NOTE = "n4711"
TITLE = "Zanzibar-Quokka-Title"
LABEL = "Marmalade-Otter-Label"
ARGS: dict[str, Any] = {"id": NOTE, "title": TITLE, "labels": [LABEL]}
RAW_VALUES = (NOTE, TITLE, LABEL)
FIELDS = {"time", "seq", "request_id", "correlation_id", "subject", "account", "tool",
          "arguments_digest", "outcome", "upstream_status", "prev", "mac"}
AUDIT_KEY = "audit-key-of-the-desk-gateway-5c1d"
SECRET_KEY = "confirmation-key-of-the-desk-8e2a"
OUR_REQUEST_ID = re.compile(r"[0-9a-f]{32}")

SERVICE = """
version: 1
name: desk
title: Desk
endpoint: /desk/mcp
upstream: {base_url: "https://api.desk.test"}
auth:
  resolver: introspection
  introspection_url: https://auth.desk.test/introspect
scopes:
  - {name: "notes:read"}
  - {name: "notes:write"}
writes: {confirm_ttl_s: 60, per_account_per_minute: 3}
"""
TOOLS = """
version: 1
tools:
  - name: get_note
    kind: read
    description: Read a note.
    scopes: ["notes:read"]
    input:
      id: {type: string, required: true}
    request: {method: GET, path: '/notes/{id}'}
  - name: retitle_note
    kind: write
    description: Change a note's title.
    scopes: ["notes:write"]
    input:
      id: {type: string, required: true}
      title: {type: string, required: true}
      labels: {type: array, items: {type: string}}
    request: {method: PATCH, path: '/notes/{id}', body: {title: '{title}', labels: '{labels}'}}
"""


@dataclass
class Upstream:
    read: respx.Route
    write: respx.Route


@pytest.fixture
def upstream(router: respx.MockRouter) -> Upstream:
    router.post(INTROSPECT).mock(return_value=httpx.Response(200, json={
        "active": True, "scope": "notes:read notes:write", "sub": "u_auditor",
        "account_id": "acc_audit", "exp": 4_102_444_800}))
    read = router.get(f"{API}/notes/{NOTE}").mock(
        return_value=httpx.Response(200, json={"id": NOTE}))
    write = router.patch(f"{API}/notes/{NOTE}").mock(
        return_value=httpx.Response(200, json={"id": NOTE}))
    return Upstream(read, write)


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    return service_tree(tmp_path / "specs", "desk", SERVICE, TOOLS)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.log"


@asynccontextmanager
async def running(specs: Path, log_path: Path | None,
                  wire: MockWire, audit_key: str = AUDIT_KEY
                  ) -> AsyncIterator[TestClient[Any, Any]]:
    """The gateway from start to stop, so its audit file is opened and closed once."""
    app = gateway_app(wire, specs_dir=specs, audit_log_path=log_path, audit_key=audit_key,
                      secret_key=SECRET_KEY)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def gateway(specs: Path, log_path: Path, upstream: Upstream,
                  wire: MockWire) -> AsyncIterator[TestClient[Any, Any]]:
    async with running(specs, log_path, wire) as client:
        yield client


async def call(client: TestClient[Any, Any], arguments: dict[str, Any],
               name: str = "retitle_note", request_id: str = "req-audit") -> dict[str, Any]:
    response = await client.post(URL, headers={**auth(WRITER), "X-Request-Id": request_id},
                                 json=rpc("tools/call", {"name": name, "arguments": arguments}))
    result: dict[str, Any] = (await response.json())["result"]
    return result


async def preview_token(client: TestClient[Any, Any], request_id: str = "req-audit") -> str:
    token: str = (await call(client, ARGS, request_id=request_id))["structuredContent"][
        "confirmation_token"]
    return token


async def execute(client: TestClient[Any, Any], token: str,
                  request_id: str = "req-audit") -> dict[str, Any]:
    return await call(client, {**ARGS, "confirmation_token": token}, request_id=request_id)


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in lines_of(path) if line.strip()]


def verify_exit(path: Path, capsys: pytest.CaptureFixture[str],
                key: str = AUDIT_KEY) -> tuple[int, str, str]:
    key_file = path.with_name("audit.key")
    key_file.write_text(key)
    with pytest.raises(SystemExit) as stopped:
        main(["audit", "verify", str(path), "--key-file", str(key_file)])
    out, err = capsys.readouterr()
    code = stopped.value.code
    assert isinstance(code, int)
    return code, out, err


# --- one line per write phase -----------------------------------------------------------------


async def test_a_preview_writes_one_record_naming_who_did_what(
        gateway: TestClient[Any, Any], log_path: Path) -> None:
    await preview_token(gateway, request_id="req-preview-1")
    [record] = records(log_path)
    assert record["phase"] == "preview" and record["outcome"] == "previewed"
    assert record["correlation_id"] == "req-preview-1"
    assert (record["subject"], record["account"]) == ("u_auditor", "acc_audit")
    assert (record["service"], record["tool"]) == ("desk", "retitle_note")
    assert record["arguments_digest"] == arguments_digest("retitle_note", ARGS)
    assert datetime.fromisoformat(record["time"]).utcoffset() is not None


async def test_a_confirmed_execution_writes_a_done_record_with_the_upstream_status(
        gateway: TestClient[Any, Any], log_path: Path) -> None:
    token = await preview_token(gateway)
    await execute(gateway, token, request_id="req-execute-1")
    preview, sending, done = records(log_path)
    assert (sending["phase"], sending["outcome"]) == ("execute", "sending")  # before it left
    assert (done["phase"], done["outcome"], done["upstream_status"]) == ("execute", "done", 200)
    assert done["correlation_id"] == "req-execute-1"
    assert done["arguments_digest"] == preview["arguments_digest"]


async def test_the_done_record_carries_the_status_the_upstream_answered(
        gateway: TestClient[Any, Any], upstream: Upstream, log_path: Path) -> None:
    upstream.write.mock(return_value=httpx.Response(202, json={"queued": True}))
    await execute(gateway, await preview_token(gateway))
    done = records(log_path)[-1]
    assert done["outcome"] == "done"
    assert done["upstream_status"] == 202


async def test_a_failed_execution_records_the_upstream_status(
        gateway: TestClient[Any, Any], upstream: Upstream, log_path: Path) -> None:
    upstream.write.mock(return_value=httpx.Response(500, json={"message": "Database down"}))
    result = await execute(gateway, await preview_token(gateway))
    failed = records(log_path)[-1]
    assert result["isError"] is True
    assert (failed["phase"], failed["outcome"], failed["upstream_status"]) == (
        "execute", "failed", 500)


async def test_a_reused_token_records_a_refusal_with_its_reason(
        gateway: TestClient[Any, Any], log_path: Path) -> None:
    token = await preview_token(gateway)
    await execute(gateway, token)
    await execute(gateway, token)
    refused = records(log_path)[-1]
    assert (refused["phase"], refused["outcome"], refused["reason"]) == (
        "execute", "refused", "reused")


async def test_a_rate_limited_execution_records_a_refusal_with_its_reason(
        gateway: TestClient[Any, Any], log_path: Path) -> None:
    tokens = [await preview_token(gateway) for _ in range(4)]
    for token in tokens:
        await execute(gateway, token)
    outcomes = [r["outcome"] for r in records(log_path)]
    assert outcomes[-7:] == ["sending", "done", "sending", "done", "sending", "done", "refused"]
    assert records(log_path)[-1]["reason"] == "rate_limited"


async def test_an_altered_token_records_a_refusal_with_its_reason(
        gateway: TestClient[Any, Any], log_path: Path, upstream: Upstream) -> None:
    token = await preview_token(gateway)
    payload, _, signature = token.partition(".")
    await execute(gateway, f"{payload}.{signature[::-1]}")
    refused = records(log_path)[-1]
    assert refused["outcome"] == "refused"
    assert "altered" in refused["reason"]
    assert not upstream.write.called


async def test_every_phase_record_carries_the_same_fields(
        gateway: TestClient[Any, Any], upstream: Upstream, log_path: Path) -> None:
    used = await preview_token(gateway)
    await execute(gateway, used)                 # done
    await execute(gateway, used)                 # refused: reused
    upstream.write.mock(return_value=httpx.Response(500, json={}))
    await execute(gateway, await preview_token(gateway))  # failed
    written = records(log_path)
    assert [r["outcome"] for r in written] == ["previewed", "sending", "done", "refused",
                                               "previewed", "sending", "failed"]
    missing = {r["outcome"]: sorted(FIELDS - r.keys()) for r in written if FIELDS - r.keys()}
    assert missing == {}


async def test_reads_write_no_audit_record(gateway: TestClient[Any, Any], log_path: Path) -> None:
    result = await call(gateway, {"id": NOTE}, name="get_note")
    assert result["isError"] is False
    assert records(log_path) == []


async def test_records_hold_no_token_and_no_raw_argument_value(
        gateway: TestClient[Any, Any], log_path: Path) -> None:
    token = await preview_token(gateway)
    await execute(gateway, token)
    await execute(gateway, token)
    text = "\n".join(lines_of(log_path))
    assert len(records(log_path)) == 4  # previewed, sending, done, refused
    assert WRITER not in text
    assert AUDIT_KEY not in text and SECRET_KEY not in text
    assert token not in text and token.partition(".")[0] not in text
    for value in RAW_VALUES:
        assert value not in text


async def test_without_an_audit_file_the_records_go_to_the_log_stream(
        specs: Path, upstream: Upstream, wire: MockWire) -> None:
    async with running(specs, None, wire) as client:
        with capture_logs() as events:
            await preview_token(client)
    audits = [e for e in events if e["event"] == "audit"]
    assert len(audits) == 1
    assert audits[0]["phase"] == "preview" and audits[0]["tool"] == "retitle_note"
    assert TITLE not in orjson.dumps(audits).decode()


# --- the chain and `mcp-gateway audit verify` -------------------------------------------------


async def write_three(client: TestClient[Any, Any]) -> None:
    for _ in range(3):
        await preview_token(client)


async def test_verify_says_an_untouched_log_is_intact(
        gateway: TestClient[Any, Any], log_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    await write_three(gateway)
    code, out, _ = verify_exit(log_path, capsys)
    assert code == 0
    assert "3 record(s), chain intact" in out


async def test_verify_reports_the_line_whose_field_was_edited(
        gateway: TestClient[Any, Any], log_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    await write_three(gateway)
    lines = lines_of(log_path)
    edited = orjson.loads(lines[1])
    edited["outcome"] = "refused"
    lines[1] = orjson.dumps(edited).decode()
    rewrite(log_path, lines)
    code, _, err = verify_exit(log_path, capsys)
    assert code == 1
    assert f"{log_path}:2: chain broken: " in err
    assert "changed" in err


async def test_verify_reports_a_deleted_line(
        gateway: TestClient[Any, Any], log_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    await write_three(gateway)
    lines = lines_of(log_path)
    rewrite(log_path, [lines[0], lines[2]])
    code, _, err = verify_exit(log_path, capsys)
    assert code == 1
    assert f"{log_path}:2: chain broken: " in err
    assert "removed" in err


def test_verify_of_a_missing_file_exits_2(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = verify_exit(tmp_path / "nothing.log", capsys)
    assert code == 2
    assert out == ""
    assert "cannot read" in err


async def test_reopening_a_log_continues_its_chain(
        specs: Path, log_path: Path, upstream: Upstream, wire: MockWire,
        capsys: pytest.CaptureFixture[str]) -> None:
    async with running(specs, log_path, wire) as first:
        await write_three(first)
    async with running(specs, log_path, wire) as second:
        await preview_token(second)
    written = records(log_path)
    code, out, _ = verify_exit(log_path, capsys)
    assert len(written) == 4
    assert written[3]["prev"] == written[2]["mac"] != GENESIS
    assert [r["seq"] for r in written] == [1, 2, 3, 4]
    assert code == 0 and "4 record(s), chain intact" in out


async def test_the_chain_is_keyed_by_the_audit_key_not_the_secret_key(
        gateway: TestClient[Any, Any], log_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    await write_three(gateway)
    assert verify_exit(log_path, capsys)[0] == 0
    code, _, err = verify_exit(log_path, capsys, key=SECRET_KEY)
    assert code == 1
    assert f"{log_path}:1: chain broken: " in err


@pytest.mark.parametrize(("audit_key", "warned"), [("", True), (AUDIT_KEY, False)],
                         ids=["without a key", "with a key"])
async def test_an_audit_file_without_a_key_is_warned_of_at_startup(
        specs: Path, log_path: Path, upstream: Upstream, wire: MockWire, audit_key: str,
        warned: bool) -> None:
    with capture_logs() as events:
        async with running(specs, log_path, wire, audit_key=audit_key):
            pass
    warnings = [e for e in events if e["event"] == "audit_log_without_key"]
    assert len(warnings) == (1 if warned else 0)
    assert all(e["log_level"] == "warning" for e in warnings)


async def test_a_log_stream_without_a_key_is_not_warned_of(
        specs: Path, upstream: Upstream, wire: MockWire) -> None:
    with capture_logs() as events:
        async with running(specs, None, wire, audit_key=""):
            pass
    assert [e for e in events if e["event"] == "audit_log_without_key"] == []


# --- our request id, and the client's kept apart ----------------------------------------------


async def test_the_client_request_id_is_kept_apart_as_the_correlation_id(
        gateway: TestClient[Any, Any], log_path: Path) -> None:
    response = await gateway.post(URL, headers={**auth(WRITER), "X-Request-Id": "req-client-7"},
                                  json=rpc("tools/call", {"name": "retitle_note",
                                                          "arguments": ARGS}))
    await preview_token(gateway, request_id="req-client-7")
    first, second = records(log_path)
    assert first["correlation_id"] == second["correlation_id"] == "req-client-7"
    assert OUR_REQUEST_ID.fullmatch(first["request_id"])
    assert OUR_REQUEST_ID.fullmatch(second["request_id"])
    assert first["request_id"] != second["request_id"]
    assert response.headers["X-Request-Id"] == first["request_id"]


@pytest.mark.parametrize("sent", ["x" * 65, "tab\tinside", None],
                         ids=["too long", "not printable", "absent"])
async def test_a_client_request_id_that_is_long_unprintable_or_absent_is_not_recorded(
        gateway: TestClient[Any, Any], log_path: Path, sent: str | None) -> None:
    headers = auth(WRITER) if sent is None else {**auth(WRITER), "X-Request-Id": sent}
    await gateway.post(URL, headers=headers,
                       json=rpc("tools/call", {"name": "retitle_note", "arguments": ARGS}))
    [record] = records(log_path)
    assert record["correlation_id"] is None
    assert OUR_REQUEST_ID.fullmatch(record["request_id"])
