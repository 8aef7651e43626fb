"""A confirmed write whose answer is lost is reconciled by one read, for each of the 9 Retently
writes, against the sandbox: a proxy on loopback passes every request on, except the write,
whose answer it loses after the sandbox acted (the write is done: the read shows it) or which
it drops before the sandbox sees it (not applied: the read shows no sign of it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from mcp import Client
from structlog.testing import capture_logs

from gateway.server.app import create_app
from gateway.settings import SHIPPED_SPECS, Settings
from gateway.spec.loader import load_tree
from sandbox import create_sandbox_app
from tests.e2e.stack import mcp_client, serve_on_loopback
from tests.faults import Fault, FaultServer, forward, reset, running

ADMIN = "rtly_mcp_pat_demoadmin_s3cr3t"

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class Desk:
    def __init__(self, proxy: FaultServer, url: str) -> None:
        self.proxy = proxy
        self.url = url
        self.client: Client

    async def read(self, tool: str, arguments: dict[str, Any]) -> Any:
        result = await self.client.call_tool(tool, arguments)
        assert result.is_error is False, result.content
        return result.structured_content

    async def confirm_losing(self, tool: str, arguments: dict[str, Any], write: str,
                             fault: Fault) -> tuple[Any, list[Any]]:
        preview = await self.read(tool, arguments)
        self.proxy.plan(write, fault)
        with capture_logs() as events:
            result = await self.client.call_tool(
                tool, {**arguments, "confirmation_token": preview["confirmation_token"]})
        self.proxy.plans.pop(write)
        return result, [e for e in events if e.get("event") == "audit"]


@pytest.fixture
async def stack() -> AsyncIterator[Desk]:
    sandbox, sandbox_url = await serve_on_loopback(create_sandbox_app())
    try:
        async with running(FaultServer(behind=sandbox_url)) as proxy:
            registry = load_tree(SHIPPED_SPECS, {"RETENTLY_API_URL": proxy.url,
                                                 "REFINER_API_URL": proxy.url,
                                                 "REFINER_AUTH_URL": proxy.url})
            gateway, url = await serve_on_loopback(
                create_app(Settings(log_level="warning"), registry))
            try:
                yield Desk(proxy, f"{url}/retently/mcp")
            finally:
                await gateway.cleanup()
    finally:
        await sandbox.cleanup()


async def _feedback(desk: Desk) -> dict[str, Any]:
    item = (await desk.read("list_feedback", {"limit": 1}))["items"][0]
    found: dict[str, Any] = await desk.read("get_feedback", {"id": item["id"]})
    return found


Case = Callable[[Desk], Any]


async def tag_feedback(desk: Desk) -> tuple[str, dict[str, Any], str]:
    item = await _feedback(desk)
    return "tag_feedback", {"id": item["id"], "add": ["reconciled"]}, "/api/v2/response/tags"


async def set_topics(desk: Desk) -> tuple[str, dict[str, Any], str]:
    item = await _feedback(desk)
    return ("set_topics", {"id": item["id"], "topics": [{"name": "Reconciled"}]},
            "/api/v2/response/topics")


async def star_feedback(desk: Desk) -> tuple[str, dict[str, Any], str]:
    item = await _feedback(desk)
    return ("star_feedback", {"id": item["id"], "starred": not item.get("starred")},
            f"/api/v2/feedback/{item['id']}/star")


async def assign_feedback(desk: Desk) -> tuple[str, dict[str, Any], str]:
    item = await _feedback(desk)
    users = (await desk.read("list_users", {}))["items"]
    other = next(u for u in users if u.get("email") != item.get("assigned"))
    return ("assign_feedback", {"id": item["id"], "user_id": other["id"]},
            f"/api/v2/feedback/{item['id']}/assign")


async def resolve_feedback(desk: Desk) -> tuple[str, dict[str, Any], str]:
    item = await _feedback(desk)
    return ("resolve_feedback", {"id": item["id"], "resolved": not item.get("resolved")},
            f"/api/v2/feedback/{item['id']}/resolve")


async def add_note(desk: Desk) -> tuple[str, dict[str, Any], str]:
    item = await _feedback(desk)
    return ("add_note", {"id": item["id"], "content": "Reconciled note."},
            f"/api/v2/feedback/{item['id']}/notes")


async def reply_feedback(desk: Desk) -> tuple[str, dict[str, Any], str]:
    item = await _feedback(desk)
    return ("reply_feedback", {"id": item["id"], "body": "Thanks, reconciled."},
            f"POST /api/v2/feedback/{item['id']}/replies")


async def update_contact(desk: Desk) -> tuple[str, dict[str, Any], str]:
    customer = (await desk.read("list_customers", {"limit": 1}))["items"][0]
    return ("update_contact", {"customer_id": customer["id"], "company": "Reconciled Ltd",
                               "add_tags": ["reconciled"]}, "POST /api/v2/customers")


async def send_survey(desk: Desk) -> tuple[str, dict[str, Any], str]:
    campaigns = (await desk.read("search_campaigns", {"type": "transactional"}))["items"]
    active = next(c for c in campaigns if c.get("isActive"))
    return ("send_survey", {"campaign_id": active["id"],
                            "subscribers": [{"email": "reconciled@example.com"}]},
            "/api/v2/survey")


CASES = [tag_feedback, set_topics, star_feedback, assign_feedback, resolve_feedback, add_note,
         reply_feedback, update_contact, send_survey]


def _text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_a_write_applied_but_unanswered_is_reported_done_after_one_read(
        stack: Desk, case: Case) -> None:
    async with mcp_client(stack.url, ADMIN, "legacy") as stack.client:
        await _a_write_applied_but_unanswered_is_reported_done_after_one_read(stack, case)


async def _a_write_applied_but_unanswered_is_reported_done_after_one_read(
        desk: Desk, case: Case) -> None:
    tool, arguments, write = await case(desk)
    result, audit = await desk.confirm_losing(tool, arguments, write,
                                              forward(desk.proxy.behind or "", then_reset=True))
    assert result.is_error is False, _text(result)
    assert result.structured_content["status"] == "done"
    assert result.structured_content["verified"] is True
    assert [(a["phase"], a["outcome"], a["reason"]) for a in audit] == [
        ("execute", "sending", None), ("execute", "done", "verified")]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_a_write_lost_before_the_upstream_saw_it_is_reported_not_applied(
        stack: Desk, case: Case) -> None:
    async with mcp_client(stack.url, ADMIN, "legacy") as stack.client:
        await _a_write_lost_before_the_upstream_saw_it_is_reported_not_applied(stack, case)


async def _a_write_lost_before_the_upstream_saw_it_is_reported_not_applied(
        desk: Desk, case: Case) -> None:
    tool, arguments, write = await case(desk)
    sent_before = desk.proxy.count(write.split(" ")[-1])
    result, audit = await desk.confirm_losing(tool, arguments, write, reset)
    assert result.is_error is True
    assert desk.proxy.count(write.split(" ")[-1]) > sent_before  # it was sent, then lost
    if tool == "send_survey":
        # No more queued surveys than before cannot tell "dropped" from "all suppressed".
        assert "Outcome unknown" in _text(result) and "list_outbox" in _text(result)
        assert [a["outcome"] for a in audit] == ["sending", "unknown"]
    else:
        assert _text(result).startswith("Not applied"), _text(result)
        assert [(a["outcome"], a["reason"]) for a in audit] == [
            ("sending", None), ("not_applied", "verified")]
