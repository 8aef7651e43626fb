"""Retently REST writes (§8.1, §8.3, §8.10, §8.11): customers, response tags and topics,
transactional surveys and suppressions, all applied to the app's in-memory account.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fnmatch import fnmatch
from typing import Any

from aiohttp import web

from sandbox.dates import retently_format
from sandbox.errors import retently_error
from sandbox.http import json_object, reply
from sandbox.retently_auth import RetentlyCall, envelope
from sandbox.retently_query import OBJECT_ID, require_object_id
from sandbox.store import RetentlyAccount, Row

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PROPERTY_TYPES = {
    "string": "text",
    "text": "text",
    "date": "date",
    "integer": "integer",
    "collection": "collection",
    "boolean": "boolean",
}
SENTIMENTS = ("positive", "neutral", "negative")
DOMAIN_CATEGORIES = ("other", "corporate", "disposable", "invalid")
MAX_SUBSCRIBERS = 100


async def _body(request: web.Request) -> dict[str, Any]:
    return await json_object(request, lambda: retently_error(400))


def _subscribers(body: dict[str, Any], *, upper: int) -> list[dict[str, Any]]:
    """Raises: UpstreamError 400 unless `subscribers` is a list of 1..upper objects with emails."""
    items = body.get("subscribers")
    if not isinstance(items, list) or not 1 <= len(items) <= upper:
        raise retently_error(400)
    if not all(isinstance(item, dict) and isinstance(item.get("email"), str) for item in items):
        raise retently_error(400)
    return items


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _find_by_email(account: RetentlyAccount, email: str) -> Row | None:
    wanted = email.lower()
    return next((row for row in account.customers if row["email"].lower() == wanted), None)


def _valid_properties(item: dict[str, Any]) -> bool:
    props = item.get("properties") or []
    return isinstance(props, list) and all(
        isinstance(prop, dict) and prop.get("type", "string") in PROPERTY_TYPES for prop in props
    )


def _apply_properties(customer: Row, item: dict[str, Any]) -> None:
    """Merge written properties into a customer (a written `string` reads back as `text`)."""
    properties: list[Row] = customer.setdefault("properties", [])
    for prop in item.get("properties") or []:
        label = str(prop.get("label") or prop.get("name") or "")
        name = str(prop.get("name") or _slug(label))
        properties[:] = [p for p in properties if p.get("name") != name]
        properties.append(
            {
                "label": label,
                "name": name,
                "type": PROPERTY_TYPES[prop.get("type", "string")],
                "value": prop.get("value"),
            }
        )
    unset = {str(name).lower() for name in item.get("unset_properties") or []}
    properties[:] = [
        p for p in properties if p["name"].lower() not in unset and p["label"].lower() not in unset
    ]


def upsert_customer(call: RetentlyCall, item: dict[str, Any]) -> tuple[str, Row | None]:
    """Create or update one customer matched on email; returns the status and the row."""
    email = str(item.get("email", "")).strip()
    if not EMAIL.fullmatch(email) or not _valid_properties(item):
        return "failed", None
    account = call.account
    now = retently_format(call.sandbox.now())
    customer = _find_by_email(account, email)
    status = "updated"
    if customer is None:
        status = "created"
        customer = {
            "id": call.sandbox.ids.object_id(),
            "email": email,
            "firstName": None,
            "lastName": None,
            "companyName": None,
            "companyId": None,
            "jobTitle": None,
            "tags": [],
            "createdDate": now,
            "updatedDate": now,
            "properties": [],
        }
    # §8.1: snake_case is what clients send; camelCase is accepted too (conflict #6).
    for target, names in (
        ("firstName", ("first_name", "firstName")),
        ("lastName", ("last_name", "lastName")),
        ("jobTitle", ("job_title", "jobTitle")),
    ):
        for name in names:
            if isinstance(item.get(name), str):
                customer[target] = item[name]
    company = item.get("company")
    if isinstance(company, str) and company:
        customer["companyName"] = company
        match = next(
            (c for c in account.companies if c["companyName"].lower() == company.lower()), None
        )
        customer["companyId"] = match["id"] if match else None
    tags = [t for t in item.get("tags") or [] if isinstance(t, str)]
    unset_tags = set(item.get("unset_tags") or [])
    customer["tags"] = [t for t in dict.fromkeys([*customer["tags"], *tags]) if t not in unset_tags]
    _apply_properties(customer, item)
    customer["updatedDate"] = now
    if status == "created":
        account.customers.append(customer)
    return status, customer


async def upsert_customers(request: web.Request, call: RetentlyCall) -> web.Response:
    # The upstream batch limit is disputed (100 vs 1000, §7); the looser one is accepted here.
    items = _subscribers(await _body(request), upper=1000)
    results: dict[str, Row] = {}
    seen: set[str] = set()
    for item in items:
        email = item["email"]
        # A repeated email in one batch keeps its first result; the repeat is not applied.
        if email.lower() in seen:
            continue
        seen.add(email.lower())
        status, customer = upsert_customer(call, item)
        results[email] = (
            {"status": status, "id": customer["id"]}
            if customer
            else {"status": "failed", "reason": "invalid"}
        )
    return reply(envelope(results, message="Subscribers was successfully added"))


async def delete_customers(request: web.Request, call: RetentlyCall) -> web.Response:
    items = _subscribers(await _body(request), upper=1000)
    results = []
    for item in items:
        customer = _find_by_email(call.account, item["email"])
        if customer is not None:
            call.account.customers.remove(customer)
        results.append({"email": item["email"], "deleted": customer is not None})
    return reply({"code": 200, "message": "Success.", "data": results})


async def unsubscribe_customers(request: web.Request, call: RetentlyCall) -> web.Response:
    items = _subscribers(await _body(request), upper=1000)
    results = []
    for item in items:
        known = _find_by_email(call.account, item["email"]) is not None
        if known:
            call.account.unsubscribed.add(item["email"].lower())
        results.append({"email": item["email"], "unsubscribed": known})
    return reply({"code": 200, "message": "Success.", "data": results})


# --- response tags and topics ----------------------------------------------------------


def _target(call: RetentlyCall, body: dict[str, Any]) -> Row:
    feedback_id = require_object_id(body.get("id") if isinstance(body.get("id"), str) else None)
    row = next((r for r in call.account.feedback if r["id"] == feedback_id), None)
    if row is None:
        raise retently_error(404)
    if body.get("op") not in (None, "append", "override"):
        raise retently_error(400)
    return row


async def set_response_tags(request: web.Request, call: RetentlyCall) -> web.Response:
    body = await _body(request)
    row = _target(call, body)
    tags = body.get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise retently_error(400)
    current = row.get("feedbackTags", []) if body.get("op") == "append" else []
    merged = list(dict.fromkeys([*current, *tags]))
    # Both fields carry the response's tags upstream (§8.3); keep them equal.
    row["feedbackTags"] = merged
    row["feedbackTagsNew"] = list(merged)
    return reply({"code": 200, "message": "Success."})


async def set_response_topics(request: web.Request, call: RetentlyCall) -> web.Response:
    body = await _body(request)
    row = _target(call, body)
    topics = body.get("topics")
    if not isinstance(topics, list):
        raise retently_error(400)
    written = []
    for topic in topics:
        if not isinstance(topic, dict) or not isinstance(topic.get("name"), str):
            raise retently_error(400)
        sentiment = topic.get("sentiment", "neutral")
        if sentiment not in SENTIMENTS:
            raise retently_error(400)
        written.append({"name": topic["name"], "sentiment": sentiment})
    kept = row.get("feedbackTopics", []) if body.get("op") == "append" else []
    names = {topic["name"].lower() for topic in written}
    row["feedbackTopics"] = [t for t in kept if t["name"].lower() not in names] + written
    return reply({"code": 200, "message": "Success."})


# --- transactional surveys -------------------------------------------------------------


def is_suppressed(account: RetentlyAccount, email: str) -> bool:
    """Suppressed by address, by a domain pattern (wildcards allowed), or opted out."""
    address = email.lower()
    domain = address.rpartition("@")[2]
    if address in account.unsubscribed:
        return True
    if any(entry["email"].lower() == address for entry in account.suppressed_emails):
        return True
    return any(fnmatch(domain, entry["pattern"].lower()) for entry in account.suppressed_domains)


async def _queue_survey(
    request: web.Request, call: RetentlyCall, *, honour_delay: bool
) -> web.Response:
    body = await _body(request)
    campaign_id = require_object_id(
        body.get("campaign") if isinstance(body.get("campaign"), str) else None
    )
    campaign = next((c for c in call.account.campaigns if c["id"] == campaign_id), None)
    if campaign is None:
        raise retently_error(404)
    if campaign["type"] != "transactional" or not campaign["isActive"]:
        raise retently_error(400)
    delay = body.get("delay") if honour_delay else None
    if delay is not None and (not isinstance(delay, int) or isinstance(delay, bool) or delay < 0):
        raise retently_error(400)
    items = _subscribers(body, upper=MAX_SUBSCRIBERS)
    if not all(EMAIL.fullmatch(item["email"].strip()) for item in items):
        raise retently_error(400)
    dropped: list[str] = []
    subject = next(
        (row["subject"] for row in call.account.outbox if row["campaignId"] == campaign_id),
        f"Quick question from {call.account.name}",
    )
    send_at = retently_format(call.sandbox.now() + timedelta(days=delay or 0))
    for item in items:
        if is_suppressed(call.account, item["email"]):
            dropped.append(item["email"])
            continue
        _, customer = upsert_customer(call, item)
        if customer is None:
            raise retently_error(400)
        props = customer.get("properties", [])
        call.account.outbox.append(
            {
                "surveyId": call.sandbox.ids.object_id(),
                "email": customer["email"],
                "customerId": customer["id"],
                "firstName": customer.get("firstName"),
                "lastName": customer.get("lastName"),
                "companyName": customer.get("companyName"),
                "companyId": customer.get("companyId"),
                "sentDate": send_at,
                "channel": campaign["channel"],
                "personTags": list(customer.get("tags", [])),
                "campaign": campaign["name"],
                "campaignId": campaign_id,
                "surveyTemplateId": campaign["templateId"],
                "subject": subject,
                "sentBy": "manual",
                "status": "SCHEDULED",
                "attributes": {
                    "customerTags": list(customer.get("tags", [])),
                    "customProps": [dict(p) for p in props],
                },
                "detailedStatus": {
                    "isOpened": False,
                    "openedDate": None,
                    "isResponded": False,
                    "respondedDate": None,
                    "hasFeedback": False,
                    "isOptedOut": False,
                    "isBounced": False,
                },
                "responseId": None,
                "mandrillMessageId": None,
                "additionalRecipients": [],
            }
        )
    # `dropped` is a sandbox extension so the caller can report suppressed recipients.
    return reply(
        {
            "code": 200,
            "message": "Success.",
            "status": "queued",
            "success": True,
            "dropped": dropped,
        }
    )


async def send_survey(request: web.Request, call: RetentlyCall) -> web.Response:
    return await _queue_survey(request, call, honour_delay=True)


async def send_survey_deprecated(request: web.Request, call: RetentlyCall) -> web.Response:
    """`/nps/customers/survey`: an alias of `/survey` that ignores `delay` (§8.10)."""
    return await _queue_survey(request, call, honour_delay=False)


# --- suppressions ----------------------------------------------------------------------


async def list_suppressed_emails(request: web.Request, call: RetentlyCall) -> web.Response:
    return reply(envelope(call.account.suppressed_emails))


async def list_suppressed_domains(request: web.Request, call: RetentlyCall) -> web.Response:
    return reply(envelope(call.account.suppressed_domains))


async def add_suppressed_email(request: web.Request, call: RetentlyCall) -> web.Response:
    body = await _body(request)
    email = body.get("email")
    if not isinstance(email, str) or not EMAIL.fullmatch(email.strip()):
        raise retently_error(400)
    existing = next(
        (e for e in call.account.suppressed_emails if e["email"].lower() == email.lower()), None
    )
    if existing is not None:
        return reply(envelope(existing))
    entry = {
        "id": call.sandbox.ids.object_id(),
        "email": email.strip(),
        "note": str(body.get("note") or ""),
        "createdDate": retently_format(call.sandbox.now()),
    }
    call.account.suppressed_emails.append(entry)
    return reply(envelope(entry))


async def add_suppressed_domain(request: web.Request, call: RetentlyCall) -> web.Response:
    body = await _body(request)
    pattern = body.get("pattern")
    category = body.get("category", "other")
    if not isinstance(pattern, str) or "." not in pattern or category not in DOMAIN_CATEGORIES:
        raise retently_error(400)
    entry = {
        "id": call.sandbox.ids.object_id(),
        "pattern": pattern.strip().lower(),
        "category": category,
        "note": str(body.get("note") or ""),
        "createdDate": retently_format(call.sandbox.now()),
    }
    call.account.suppressed_domains.append(entry)
    return reply(envelope(entry))


def _remove(entries: list[Row], entry_id: str) -> None:
    if not OBJECT_ID.fullmatch(entry_id):
        raise retently_error(400)
    for entry in entries:
        if entry["id"] == entry_id:
            entries.remove(entry)
            return
    raise retently_error(404)


async def remove_suppressed_email(request: web.Request, call: RetentlyCall) -> web.Response:
    _remove(call.account.suppressed_emails, request.match_info["id"])
    return reply(envelope(None))


async def remove_suppressed_domain(request: web.Request, call: RetentlyCall) -> web.Response:
    _remove(call.account.suppressed_domains, request.match_info["id"])
    return reply(envelope(None))
