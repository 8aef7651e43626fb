"""The Retently extension endpoints of upstream-retently.md §17.3 (no public REST counterpart).

Feedback curation writes change the same rows `GET /feedback` serves, so every effect is
visible to later reads; `starred` is the one sandbox-only field they add.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from sandbox.dates import retently_format
from sandbox.errors import retently_error
from sandbox.http import json_object, reply
from sandbox.retently_auth import RetentlyCall, envelope
from sandbox.retently_query import (
    find_feedback,
    page_of,
    paging,
    require_object_id,
    sort_rows,
)
from sandbox.store import Row

FILTER_FIELDS: dict[str, Any] = {
    "fields": [
        {"name": "score", "type": "integer", "ops": ["eq", "gte", "lte"]},
        {"name": "comment", "type": "text", "ops": ["contains"]},
        {"name": "campaignId", "type": "id", "ops": ["eq"]},
        {
            "name": "metricsType",
            "type": "enum",
            "values": ["NPS", "CSAT", "CES", "STAR"],
            "ops": ["eq"],
        },
        {
            "name": "attributes.<property name>",
            "type": "property",
            "ops": ["eq", "ne", "contains", "gt", "gte", "lt", "lte"],
        },
    ],
    "match": ["all", "any"],
}
DIGEST_DETAIL = ("deltas", "themes", "aiSummary")
INTEGRATION_SUMMARY = ("id", "name", "isConnected", "health", "lastSyncDate")


async def _body(request: web.Request) -> dict[str, Any]:
    return await json_object(request, lambda: retently_error(400))


def _feedback(request: web.Request, call: RetentlyCall) -> Row:
    return find_feedback(call.account, request.match_info["id"])


# --- feedback curation -----------------------------------------------------------------


async def list_statuses(request: web.Request, call: RetentlyCall) -> web.Response:
    return reply(envelope({"statuses": call.account.statuses}))


async def list_replies(request: web.Request, call: RetentlyCall) -> web.Response:
    row = _feedback(request, call)
    replies = call.account.replies.get(row["id"], [])
    return reply(envelope({"feedbackId": row["id"], "replies": replies}))


async def star_feedback(request: web.Request, call: RetentlyCall) -> web.Response:
    row = _feedback(request, call)
    starred = (await _body(request)).get("starred", True)
    if not isinstance(starred, bool):
        raise retently_error(400)
    row["starred"] = starred
    return reply(envelope({"id": row["id"], "starred": starred}))


async def assign_feedback(request: web.Request, call: RetentlyCall) -> web.Response:
    row = _feedback(request, call)
    body = await _body(request)
    if "assignee" not in body:
        raise retently_error(400)
    assignee = body["assignee"]
    if assignee is not None:
        team = {user["email"].lower(): user["email"] for user in call.account.users}
        if not isinstance(assignee, str) or assignee.lower() not in team:
            raise retently_error(400)
        assignee = team[assignee.lower()]
    row["assigned"] = assignee
    return reply(envelope({"id": row["id"], "assigned": assignee}))


async def resolve_feedback(request: web.Request, call: RetentlyCall) -> web.Response:
    """`resolved` true/false, or an explicit (possibly custom) `status`."""
    row = _feedback(request, call)
    body = await _body(request)
    statuses = {status["id"]: status for status in call.account.statuses}
    if isinstance(body.get("status"), str):
        status = statuses.get(body["status"])
        if status is None:
            raise retently_error(400)
    elif isinstance(body.get("resolved"), bool):
        wanted = "isClosed" if body["resolved"] else "isDefault"
        status = next(s for s in call.account.statuses if s[wanted])
    else:
        raise retently_error(400)
    row["status"] = status["id"]
    row["resolved"] = bool(status["isClosed"])
    return reply(envelope({"id": row["id"], "resolved": row["resolved"], "status": row["status"]}))


async def add_note(request: web.Request, call: RetentlyCall) -> web.Response:
    row = _feedback(request, call)
    content = (await _body(request)).get("content")
    if not isinstance(content, str) or not content.strip():
        raise retently_error(400)
    note = {
        "author": call.token.user,
        "content": content,
        "date": retently_format(call.sandbox.now()),
        "metricsType": row["metricsType"],
    }
    row.setdefault("notes", []).append(note)
    return reply(envelope({"id": row["id"], "note": note}))


async def reply_feedback(request: web.Request, call: RetentlyCall) -> web.Response:
    row = _feedback(request, call)
    body = await _body(request)
    text = body.get("body")
    subject = body.get("subject", "Re: your feedback")
    if not isinstance(text, str) or not text.strip() or not isinstance(subject, str):
        raise retently_error(400)
    if not row.get("email"):
        raise retently_error(400)
    sent = {
        "id": call.sandbox.ids.object_id(),
        "direction": "outbound",
        "from": call.token.user,
        "to": row["email"],
        "subject": subject,
        "body": text,
        "createdDate": retently_format(call.sandbox.now()),
    }
    call.account.replies.setdefault(row["id"], []).append(sent)
    return reply(envelope({"reply": {**sent, "status": "queued"}}))


# --- filters ---------------------------------------------------------------------------


async def describe_filters(request: web.Request, call: RetentlyCall) -> web.Response:
    return reply(envelope(FILTER_FIELDS))


async def list_saved_filters(request: web.Request, call: RetentlyCall) -> web.Response:
    return reply(envelope({"filters": call.account.saved_filters}))


async def list_recent_filters(request: web.Request, call: RetentlyCall) -> web.Response:
    """Recent filters are per user: the token's own team member."""
    return reply(envelope({"filters": call.account.recent_filters.get(call.token.user, [])}))


# --- digests ---------------------------------------------------------------------------


async def list_digests(request: web.Request, call: RetentlyCall) -> web.Response:
    page = paging(call.params, default_sort="-createdDate", sortable={"createdDate": "createdDate"})
    rows = sort_rows(call.account.digests, page.field, descending=page.descending)
    listed = [{k: v for k, v in row.items() if k not in DIGEST_DETAIL} for row in rows]
    data = page_of(listed, page, "digests")
    data.pop("sort")  # §17.3 shows no `sort` key on this list.
    return reply(envelope(data))


async def get_digest(request: web.Request, call: RetentlyCall) -> web.Response:
    digest_id = require_object_id(request.match_info["id"])
    for row in call.account.digests:
        if row["id"] == digest_id:
            return reply(envelope(row))
    raise retently_error(404)


# --- outbox queue ----------------------------------------------------------------------


async def queue_status(request: web.Request, call: RetentlyCall) -> web.Response:
    """Scheduled surveys come from the outbox (so `POST /survey` shows up); throttled ones
    are a fixture figure, since the outbox has no throttled state."""
    scheduled = [row for row in call.account.outbox if row["status"] == "SCHEDULED"]
    throttled = call.account.queue.get("throttled", [])
    queued: Counter[str] = Counter(row["campaignId"] for row in scheduled)
    for entry in throttled:
        queued[entry["campaignId"]] += entry["count"]
    names = {campaign["id"]: campaign["name"] for campaign in call.account.campaigns}
    dates = [row["sentDate"] for row in scheduled] + [e["oldestQueuedDate"] for e in throttled]
    throttled_total = sum(entry["count"] for entry in throttled)
    return reply(
        envelope(
            {
                "depth": len(scheduled) + throttled_total,
                "scheduled": len(scheduled),
                "throttled": throttled_total,
                "oldestQueuedDate": min(dates) if dates else None,
                "byCampaign": [
                    {"campaignId": cid, "campaign": names.get(cid, ""), "queued": count}
                    for cid, count in sorted(queued.items())
                ],
            }
        )
    )


# --- integrations, team, account -------------------------------------------------------


async def list_integrations(request: web.Request, call: RetentlyCall) -> web.Response:
    listed = [{k: row[k] for k in INTEGRATION_SUMMARY} for row in call.account.integrations]
    return reply(envelope({"integrations": listed}))


async def integration_status(request: web.Request, call: RetentlyCall) -> web.Response:
    for row in call.account.integrations:
        if row["id"] == request.match_info["id"]:
            return reply(envelope(row))
    raise retently_error(404)


async def list_users(request: web.Request, call: RetentlyCall) -> web.Response:
    return reply(envelope({"users": call.account.users}))


async def get_user(request: web.Request, call: RetentlyCall) -> web.Response:
    user_id = require_object_id(request.match_info["id"])
    for row in call.account.users:
        if row["id"] == user_id:
            return reply(envelope(row))
    raise retently_error(404)


async def plan_usage(request: web.Request, call: RetentlyCall) -> web.Response:
    return reply(envelope(call.account.usage))
