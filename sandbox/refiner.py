"""Refiner REST API v1 reads (§4), the §13.4 extensions `/v1/tags` and `/v1/traits`, and the
route table of every Refiner path. Writes live in `refiner_writes`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox import refiner_writes
from sandbox.errors import refiner_error
from sandbox.http import reply
from sandbox.refiner_auth import RefinerCall, accessible_projects, endpoint
from sandbox.refiner_query import (
    UUID,
    find_contact,
    first,
    flag,
    page_request,
    paginate,
    response_filter,
    response_key,
    select_responses,
)
from sandbox.refiner_reporting import report
from sandbox.store import RefinerProject

Row = dict[str, Any]

FORM_LISTS = ("all", "published", "drafts", "archived", "all_with_archived")
FORM_INFO = (
    "channels",
    "created_at",
    "updated_at",
    "published_at",
    "archived_at",
    "first_form_view_at",
    "last_form_view_at",
    "responses_count",
    "views_count",
    "folder",
    "page_url",
)
CONTACT_ORDER = {
    "first_seen_at": True,
    "last_seen_at": True,
    "last_form_submission_at": True,
    "display_name": False,
    "email": False,
}
"""Accepted `order_by` values and whether each sorts newest (descending) first."""
TRAIT_SOURCES = {"all": ("contact", "form", "account"), "contact": ("contact",), "form": ("form",)}


async def whoami(request: web.Request, call: RefinerCall) -> web.Response:
    """`GET /v1/`: the key's project, or the projects a multi-project token is granted."""
    if call.token.kind == "api_key":
        project = call.sandbox.refiner[call.token.projects[0]]
        return reply(
            {
                "project_uuid": project.uuid,
                "project_name": project.name,
                "message": "Authentication successful",
            }
        )
    projects = [
        {"uuid": p.uuid, "name": p.name} for p in accessible_projects(call.sandbox, call.token)
    ]
    return reply({"projects": projects, "message": "Authentication successful"})


async def account(request: web.Request, call: RefinerCall) -> web.Response:
    granted = {p.uuid for p in accessible_projects(call.sandbox, call.token)}
    body = dict(call.sandbox.refiner_account)
    if call.token.kind == "oauth":
        body["environments"] = [env for env in body["environments"] if env["uuid"] in granted]
    return reply(body)


# --- forms -----------------------------------------------------------------------------


def _form_state(form: Row, wanted: str) -> bool:
    archived = form.get("archived_at") is not None
    published = form.get("published_at") is not None
    return {
        "all": not archived,
        "published": published and not archived,
        "drafts": not published and not archived,
        "archived": archived,
        "all_with_archived": True,
    }[wanted]


def _completed_counts(project: RefinerProject) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in project.responses:
        if row.get("completed_at"):
            counts[row["form"]["uuid"]] = counts.get(row["form"]["uuid"], 0) + 1
    return counts


async def list_forms(request: web.Request, call: RefinerCall) -> web.Response:
    project = call.scoped
    wanted = first(call.params, "list") or "all"
    if wanted not in FORM_LISTS:
        raise refiner_error(400, "Invalid list")
    paging = page_request(call.params, cursors=False)
    with_info, with_config = flag(call.params, "include_info"), flag(call.params, "include_config")
    counts = _completed_counts(project)
    forms = sorted(
        (form for form in project.forms if _form_state(form, wanted)),
        key=lambda form: (form["name"].lower(), form["uuid"]),
    )
    items = []
    for form in forms:
        item: Row = {"uuid": form["uuid"], "name": form["name"]}
        if with_info:
            item.update({key: form.get(key) for key in FORM_INFO})
            # Counted live so responses written through the API show up.
            item["responses_count"] = counts.get(form["uuid"], 0)
        if with_config:
            item["config"] = form["config"]
        items.append(item)
    page, pagination = paginate(
        items,
        paging,
        lambda row: (row["name"].lower(), row["uuid"]),
        descending=False,
        cursors=False,
    )
    return reply({"items": page, "pagination": pagination})


async def form_history(request: web.Request, call: RefinerCall) -> web.Response:
    project = call.scoped
    form_uuid = first(call.params, "form_uuid")
    if not form_uuid:
        raise refiner_error(400, "form_uuid is required")
    if not UUID.fullmatch(form_uuid):
        raise refiner_error(400, "Invalid form_uuid")
    if not any(form["uuid"] == form_uuid.lower() for form in project.forms):
        raise refiner_error(404, "Form not found")
    entries = sorted(
        (e for e in project.form_history if e["form_uuid"] == form_uuid.lower()),
        key=lambda e: (e["created_at"], e["uuid"]),
        reverse=True,
    )
    items = [{k: v for k, v in entry.items() if k != "form_uuid"} for entry in entries]
    page, pagination = paginate(
        items,
        page_request(call.params, cursors=False),
        lambda row: (row["created_at"], row["uuid"]),
        descending=True,
        cursors=False,
    )
    return reply({"items": page, "pagination": pagination})


# --- responses and reporting -----------------------------------------------------------


def _response_out(row: Row, contacts: dict[str, Row], with_attributes: bool) -> Row:
    item = dict(row)
    contact = row.get("contact")
    if isinstance(contact, dict):
        item["contact"] = dict(contact)
        if with_attributes:
            stored = contacts.get(contact["uuid"], {})
            item["contact"]["attributes"] = dict(stored.get("attributes", {}))
    return item


async def list_responses(request: web.Request, call: RefinerCall) -> web.Response:
    project = call.scoped
    paging = page_request(call.params, cursors=True)
    rows = select_responses(project, response_filter(call.params))
    page, pagination = paginate(rows, paging, response_key, descending=True)
    contacts = {contact["uuid"]: contact for contact in project.contacts}
    with_attributes = flag(call.params, "with_attributes")
    items = [_response_out(row, contacts, with_attributes) for row in page]
    return reply({"items": items, "pagination": pagination})


async def reporting(request: web.Request, call: RefinerCall) -> web.Response:
    return reply(report(call.scoped, call.params, call.sandbox.now()))


# --- segments, tags, traits, contacts --------------------------------------------------


def _by_name(items: list[Row]) -> list[Row]:
    return sorted(items, key=lambda row: (row["name"].lower(), row["uuid"]))


def _name_key(row: Row) -> tuple[str, str]:
    return (row["name"].lower(), row["uuid"])


async def list_segments(request: web.Request, call: RefinerCall) -> web.Response:
    items = _by_name(call.scoped.segments)
    page, pagination = paginate(
        items, page_request(call.params, cursors=True), _name_key, descending=False
    )
    return reply({"items": page, "pagination": pagination})


async def list_tags(request: web.Request, call: RefinerCall) -> web.Response:
    items = _by_name(call.scoped.tags)
    page, pagination = paginate(
        items, page_request(call.params, cursors=True), _name_key, descending=False
    )
    return reply({"items": page, "pagination": pagination})


async def list_traits(request: web.Request, call: RefinerCall) -> web.Response:
    include = first(call.params, "include") or "all"
    if include not in TRAIT_SOURCES:
        raise refiner_error(400, "Invalid include")
    # Traits keep the project's own order (grouped by source); their position is the cursor key.
    ordered = [
        {"_position": f"{index:06d}", **trait} for index, trait in enumerate(call.scoped.traits)
    ]
    items = [trait for trait in ordered if trait["source"] in TRAIT_SOURCES[include]]
    page, pagination = paginate(
        items,
        page_request(call.params, cursors=True),
        lambda row: (row["_position"],),
        descending=False,
    )
    page = [{k: v for k, v in trait.items() if k != "_position"} for trait in page]
    return reply({"items": page, "pagination": pagination})


def _last_submission(project: RefinerProject) -> dict[str, str]:
    latest: dict[str, str] = {}
    for row in project.responses:
        contact = (row.get("contact") or {}).get("uuid")
        stamp = row.get("completed_at")
        if contact and stamp and stamp > latest.get(contact, ""):
            latest[contact] = stamp
    return latest


def _filter_contacts(project: RefinerProject, params: dict[str, list[str]]) -> list[Row]:
    """Apply `form_uuid` (has answered the form), `segment_uuid` and `search`."""
    contacts = list(project.contacts)
    for name in ("form_uuid", "segment_uuid"):
        value = first(params, name)
        if value and not UUID.fullmatch(value):
            raise refiner_error(400, f"Invalid {name}")
    form_uuid = (first(params, "form_uuid") or "").lower()
    if form_uuid:
        responders = {
            (row.get("contact") or {}).get("uuid")
            for row in project.responses
            if row["form"]["uuid"] == form_uuid
        }
        contacts = [c for c in contacts if c["uuid"] in responders]
    segment_uuid = (first(params, "segment_uuid") or "").lower()
    if segment_uuid:
        contacts = [c for c in contacts if any(s["uuid"] == segment_uuid for s in c["segments"])]
    search = (first(params, "search") or "").strip().lower()
    if search:
        fields = ("email", "remote_id", "display_name")
        contacts = [
            c
            for c in contacts
            if c["uuid"] == search or any(search in str(c.get(k) or "").lower() for k in fields)
        ]
    return contacts


async def list_contacts(request: web.Request, call: RefinerCall) -> web.Response:
    project = call.scoped
    order = first(call.params, "order_by") or "first_seen_at"
    if order not in CONTACT_ORDER:
        raise refiner_error(400, "Invalid order_by")
    paging = page_request(call.params, cursors=True)
    contacts = _filter_contacts(project, call.params)
    submitted = _last_submission(project) if order == "last_form_submission_at" else {}

    def key(row: Row) -> tuple[str, str]:
        value = submitted.get(row["uuid"]) if submitted else row.get(order)
        return (str(value or "").lower(), row["uuid"])

    contacts.sort(key=key, reverse=CONTACT_ORDER[order])
    page, pagination = paginate(contacts, paging, key, descending=CONTACT_ORDER[order])
    return reply({"items": page, "pagination": pagination})


async def get_contact(request: web.Request, call: RefinerCall) -> web.Response:
    given = {
        name: values[0] for name, values in call.params.items() if name in ("id", "email", "uuid")
    }
    if len(given) != 1:
        raise refiner_error(400, "Provide exactly one of id, email or uuid")
    contact = find_contact(call.scoped, given)
    if contact is None:
        raise refiner_error(404, "Contact not found")
    return reply(contact)


# --- routes ----------------------------------------------------------------------------


def routes() -> list[web.RouteDef]:
    w = refiner_writes
    read = "mcp:projects-read"
    return [
        web.get("/v1", endpoint(scope=None, project=False)(whoami)),
        web.get("/v1/", endpoint(scope=None, project=False)(whoami)),
        web.get("/v1/account", endpoint(scope=read, project=False)(account)),
        web.get("/v1/forms", endpoint(scope="mcp:forms-read")(list_forms)),
        web.get("/v1/forms/history", endpoint(scope="mcp:forms-read")(form_history)),
        web.get("/v1/responses", endpoint(scope="mcp:responses-read")(list_responses)),
        web.get("/v1/reporting", endpoint(scope="mcp:reporting-read")(reporting)),
        web.get("/v1/segments", endpoint(scope=read)(list_segments)),
        web.get("/v1/tags", endpoint(scope=read)(list_tags)),
        web.get("/v1/traits", endpoint(scope=read)(list_traits)),
        # Contacts are all PII and back no MCP tool; only REST keys reach them.
        web.get("/v1/contacts", endpoint(scope=None, rest_only=True)(list_contacts)),
        web.get("/v1/contact", endpoint(scope=None, rest_only=True)(get_contact)),
        web.post("/v1/identify-user", endpoint(scope=None, write=True)(w.identify_user)),
        web.post("/v1/track-event", endpoint(scope=None, write=True)(w.track_event)),
        web.post("/v1/track", endpoint(scope=None, write=True)(w.track_event)),
        web.post("/v1/responses", endpoint(scope=None, write=True)(w.store_response)),
        web.post("/v1/responses/tags", endpoint(scope=None, write=True)(w.tag_response)),
        web.post("/v1/sync-segment", endpoint(scope=None, write=True)(w.add_to_segment)),
        web.delete("/v1/sync-segment", endpoint(scope=None, write=True)(w.remove_from_segment)),
        web.delete("/v1/contact", endpoint(scope=None, write=True)(w.delete_contact)),
        web.post("/v1/forms/publish", endpoint(scope=None, write=True)(w.publish_form)),
        web.post("/v1/forms/duplicate", endpoint(scope=None, write=True)(w.duplicate_form)),
        web.delete("/v1/forms", endpoint(scope=None, write=True)(w.archive_form)),
    ]
