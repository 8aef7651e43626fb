"""Refiner REST writes (§5), kept in the app's memory so later reads see them.

Parameters may come in the URL or in a JSON body (§1); the body wins when both name a key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from sandbox.dates import parse_input, refiner_object_format, refiner_response_format
from sandbox.errors import refiner_error
from sandbox.http import reply
from sandbox.refiner_auth import RefinerCall, ensure
from sandbox.refiner_query import UUID, find_contact
from sandbox.store import RefinerProject, Row

RESERVED = frozenset(
    {"form_uuid", "id", "email", "uuid", "date", "prevent_duplicates", "tags", "account", "api_key"}
)
MAX_TAGS = 20
MAX_TRAIT_LENGTH = 255
OK = {"message": "ok"}


def _args(call: RefinerCall) -> dict[str, Any]:
    merged: dict[str, Any] = {name: values[0] for name, values in call.params.items() if values}
    merged.update(call.body)
    merged.pop("api_key", None)
    return merged


def _identified(args: Mapping[str, Any]) -> None:
    ensure(
        any(args.get(name) for name in ("id", "email", "uuid")),
        400,
        "id, email or uuid is required",
    )


def _now(call: RefinerCall) -> str:
    """Now in the contact and form style; response rows use `refiner_response_format`."""
    return refiner_object_format(call.sandbox.now())


def _traits(args: Mapping[str, Any]) -> dict[str, Any]:
    traits = {key: value for key, value in args.items() if key not in RESERVED}
    for value in traits.values():
        ensure(
            not isinstance(value, str) or len(value) <= MAX_TRAIT_LENGTH,
            400,
            f"Trait values must be at most {MAX_TRAIT_LENGTH} characters",
        )
    return traits


def _account(call: RefinerCall, given: Any) -> Row | None:
    if not isinstance(given, dict) or not given.get("id"):
        return None
    project = call.scoped
    remote_id = str(given["id"])
    traits = _traits(given)
    now = _now(call)
    for contact in project.contacts:
        account = contact.get("account")
        if account and account["remote_id"] == remote_id:
            shared = account["uuid"]
            for other in project.contacts:
                if other.get("account") and other["account"]["uuid"] == shared:
                    other["account"]["attributes"].update(traits)
                    other["account"]["last_seen_at"] = now
            shared_copy: Row = copy.deepcopy(account)
            return shared_copy
    return {
        "uuid": call.sandbox.ids.uuid(),
        "remote_id": remote_id,
        "domain": traits.pop("domain", None),
        "display_name": traits.pop("name", None),
        "first_seen_at": now,
        "last_seen_at": now,
        "attributes": traits,
    }


def _upsert_contact(call: RefinerCall, args: Mapping[str, Any]) -> Row:
    """Find the identified contact or create it (by `id` or `email`), then apply traits."""
    _identified(args)
    project = call.scoped
    contact = find_contact(project, args)
    now = _now(call)
    if contact is None:
        ensure(
            not args.get("uuid") or bool(args.get("id") or args.get("email")),
            404,
            "Contact not found",
        )
        contact = {
            "uuid": call.sandbox.ids.uuid(),
            "remote_id": args.get("id"),
            "email": args.get("email"),
            "display_name": None,
            "first_seen_at": now,
            "last_seen_at": now,
            "attributes": {},
            "segments": [],
            "account": None,
        }
        project.contacts.append(contact)
    traits = _traits(args)
    name = traits.pop("name", None) or traits.pop("display_name", None)
    if isinstance(name, str):
        contact["display_name"] = name
    contact["attributes"].update(traits)
    account = _account(call, args.get("account"))
    if account is not None:
        contact["account"] = account
    contact["last_seen_at"] = now
    return contact


def _snapshot(contact: Row) -> Row:
    """The contact as embedded in a response item (§4.5)."""
    account = contact.get("account")
    return {
        "uuid": contact["uuid"],
        "remote_id": contact.get("remote_id"),
        "email": contact.get("email"),
        "display_name": contact.get("display_name"),
        "account": None
        if not account
        else {key: account.get(key) for key in ("uuid", "remote_id", "display_name", "domain")},
    }


def _tag_uuids(call: RefinerCall, names: Any) -> list[str]:
    ensure(
        isinstance(names, list)
        and 0 < len(names) <= MAX_TAGS
        and all(isinstance(n, str) and n for n in names),
        400,
        f"tags must be a list of 1 to {MAX_TAGS} names",
    )
    project = call.scoped
    found = []
    for name in names:
        tag = next((t for t in project.tags if t["name"].lower() == name.lower()), None)
        if tag is None:
            tag = {"uuid": call.sandbox.ids.uuid(), "name": name, "created_at": _now(call)}
            project.tags.append(tag)
        found.append(tag["uuid"])
    return found


def _link_tags(project: RefinerProject, response_uuid: str, tags: list[str]) -> None:
    linked = project.response_tags.setdefault(response_uuid, [])
    linked.extend(tag for tag in tags if tag not in linked)


def _form(call: RefinerCall, args: Mapping[str, Any]) -> Row:
    form_uuid = args.get("form_uuid")
    ensure(isinstance(form_uuid, str) and bool(form_uuid), 400, "form_uuid is required")
    ensure(bool(UUID.fullmatch(str(form_uuid))), 400, "Invalid form_uuid")
    form = next((f for f in call.scoped.forms if f["uuid"] == str(form_uuid).lower()), None)
    if form is None:
        raise refiner_error(404, "Form not found")
    return form


def _history(call: RefinerCall, form: Row, action: str) -> None:
    call.scoped.form_history.append(
        {
            "uuid": call.sandbox.ids.uuid(),
            "form_uuid": form["uuid"],
            "action": action,
            "snapshot": {
                "name": form["name"],
                "published_at": form.get("published_at"),
                "archived_at": form.get("archived_at"),
            },
            "created_at": _now(call),
        }
    )


async def identify_user(request: web.Request, call: RefinerCall) -> web.Response:
    args = _args(call)
    ensure(bool(args.get("id") or args.get("email")), 400, "id or email is required")
    contact = _upsert_contact(call, args)
    return reply({"message": "ok", "contact_uuid": contact["uuid"]})


async def track_event(request: web.Request, call: RefinerCall) -> web.Response:
    args = _args(call)
    ensure(isinstance(args.get("event"), str) and bool(args.get("event")), 400, "event is required")
    contact = _upsert_contact(
        call, {key: args[key] for key in ("id", "email", "uuid") if key in args}
    )
    call.scoped.events.append(
        {"contact_uuid": contact["uuid"], "event": args["event"], "date": _now(call)}
    )
    return reply(OK)


async def store_response(request: web.Request, call: RefinerCall) -> web.Response:
    args = _args(call)
    form = _form(call, args)
    _identified(args)
    tags = _tag_uuids(call, args["tags"]) if "tags" in args else []
    when = call.sandbox.now()
    if args.get("date"):
        try:
            when = parse_input(str(args["date"]), allow_unix=False)[0]
        except ValueError as exc:
            raise refiner_error(400, "Invalid date") from exc
    stamp = refiner_response_format(when)
    contact = _upsert_contact(
        call, {k: v for k, v in args.items() if k in ("id", "email", "uuid", "account")}
    )
    answers = {key: value for key, value in args.items() if key not in RESERVED}
    project = call.scoped
    prevent = args.get("prevent_duplicates", True) not in (False, 0, "0", "false")
    existing = next(
        (
            r
            for r in project.responses
            if prevent
            and r.get("completed_at")
            and r["form"]["uuid"] == form["uuid"]
            and (r.get("contact") or {}).get("uuid") == contact["uuid"]
        ),
        None,
    )
    if existing is not None:
        existing["data"].update(answers)
        existing.update(last_data_reception_at=stamp, completed_at=stamp, received_at=stamp)
        row = existing
    else:
        row = {
            "uuid": call.sandbox.ids.uuid(),
            "first_shown_at": stamp,
            "last_shown_at": stamp,
            "show_counter": 1,
            "first_data_reception_at": stamp,
            "last_data_reception_at": stamp,
            "completed_at": stamp,
            "received_at": stamp,
            "dismissed_at": None,
            "form": {"uuid": form["uuid"], "name": form["name"]},
            "data": answers,
            "contact": _snapshot(contact),
        }
        project.responses.append(row)
    _link_tags(project, row["uuid"], tags)
    return reply({"message": "ok", "uuid": row["uuid"]})


async def tag_response(request: web.Request, call: RefinerCall) -> web.Response:
    args = _args(call)
    response_uuid = str(args.get("uuid") or "").lower()
    ensure(bool(UUID.fullmatch(response_uuid)), 400, "Invalid uuid")
    project = call.scoped
    if not any(row["uuid"] == response_uuid for row in project.responses):
        raise refiner_error(404, "Response not found")
    _link_tags(project, response_uuid, _tag_uuids(call, args.get("tags")))
    return reply(OK)


def _segment_and_contact(call: RefinerCall) -> tuple[Row, Row]:
    args = _args(call)
    _identified(args)
    segment_uuid = str(args.get("segment_uuid") or "").lower()
    ensure(bool(UUID.fullmatch(segment_uuid)), 400, "Invalid segment_uuid")
    segment = next((s for s in call.scoped.segments if s["uuid"] == segment_uuid), None)
    if segment is None:
        raise refiner_error(404, "Segment not found")
    ensure(bool(segment["is_manual"]), 400, "Segment is not manual")
    contact = find_contact(call.scoped, args)
    if contact is None:
        raise refiner_error(404, "Contact not found")
    return segment, contact


async def add_to_segment(request: web.Request, call: RefinerCall) -> web.Response:
    segment, contact = _segment_and_contact(call)
    if not any(s["uuid"] == segment["uuid"] for s in contact["segments"]):
        contact["segments"].append({"uuid": segment["uuid"], "name": segment["name"]})
    return reply(
        {"message": "ok", "contact_uuid": contact["uuid"], "segment_uuid": segment["uuid"]}
    )


async def remove_from_segment(request: web.Request, call: RefinerCall) -> web.Response:
    segment, contact = _segment_and_contact(call)
    contact["segments"] = [s for s in contact["segments"] if s["uuid"] != segment["uuid"]]
    return reply(OK)


async def delete_contact(request: web.Request, call: RefinerCall) -> web.Response:
    """Deletes the contact and their responses, as the vendor documents."""
    args = _args(call)
    _identified(args)
    project = call.scoped
    contact = find_contact(project, args)
    if contact is None:
        raise refiner_error(404, "Contact not found")
    project.contacts.remove(contact)
    gone = {
        r["uuid"]
        for r in project.responses
        if (r.get("contact") or {}).get("uuid") == contact["uuid"]
    }
    project.responses[:] = [r for r in project.responses if r["uuid"] not in gone]
    for response_uuid in gone:
        project.response_tags.pop(response_uuid, None)
    return reply(OK)


async def publish_form(request: web.Request, call: RefinerCall) -> web.Response:
    args = _args(call)
    form = _form(call, args)
    published = args.get("published", 1) not in (False, 0, "0", "false")
    form["published_at"] = (form.get("published_at") or _now(call)) if published else None
    form["updated_at"] = _now(call)
    _history(call, form, "publish" if published else "unpublish")
    return reply(OK)


async def duplicate_form(request: web.Request, call: RefinerCall) -> web.Response:
    args = _args(call)
    source = _form(call, args)
    now = _now(call)
    copied = copy.deepcopy(source)
    copied.update(
        uuid=call.sandbox.ids.uuid(),
        name=str(args.get("name") or f"Copy of {source['name']}"),
        created_at=now,
        updated_at=now,
        published_at=None,
        archived_at=None,
        first_form_view_at=None,
        last_form_view_at=None,
        responses_count=0,
        views_count=0,
    )
    call.scoped.forms.append(copied)
    _history(call, copied, "create")
    return reply({"source_form_uuid": source["uuid"], "new_form_uuid": copied["uuid"]})


async def archive_form(request: web.Request, call: RefinerCall) -> web.Response:
    form = _form(call, _args(call))
    form["archived_at"] = form.get("archived_at") or _now(call)
    form["updated_at"] = _now(call)
    _history(call, form, "archive")
    return reply(OK)
