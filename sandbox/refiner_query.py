"""Refiner list semantics (§3): bracket arrays, page and cursor paging, response filters (§4.5).

Pure: parameters arrive as `{name: [values]}`; malformed input raises the sandbox's
`400 {"error": ...}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sandbox.dates import parse_input, parse_stored
from sandbox.errors import refiner_error
from sandbox.store import RefinerProject

Params = dict[str, list[str]]
Row = dict[str, Any]
SortKey = tuple[str, ...]

UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
MAX_PAGE_LENGTH = 1000
DEFAULT_PAGE_LENGTH = 100
INCLUDE = ("completed", "partials", "all")


def first(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def uuids(params: Params, single: str, plural: str) -> list[str]:
    """Values of `single`, `plural[]` and `plural` (comma-separated allowed), all validated.

    Raises:
        UpstreamError: 400 naming the parameter when a value is not a UUID.
    """
    found: list[str] = []
    for name in (single, f"{plural}[]", plural):
        for value in params.get(name, []):
            for part in (piece.strip() for piece in value.split(",")):
                if part and not UUID.fullmatch(part):
                    raise refiner_error(400, f"Invalid {name}")
                if part:
                    found.append(part)
    return [value.lower() for value in found]


def strings(params: Params, plural: str) -> list[str]:
    """Values of `plural[]` and `plural`, splitting comma-separated lists."""
    return [
        part.strip()
        for name in (f"{plural}[]", plural)
        for value in params.get(name, [])
        for part in value.split(",")
        if part.strip()
    ]


def flag(params: Params, name: str) -> bool:
    return first(params, name) in ("1", "true")


def date_param(params: Params, name: str) -> tuple[datetime, bool] | None:
    """Raises: UpstreamError 400 `Invalid <name>` for anything but an ISO date or datetime."""
    value = first(params, name)
    if not value:
        return None
    try:
        return parse_input(value, allow_unix=False)
    except ValueError as exc:
        raise refiner_error(400, f"Invalid {name}") from exc


def window(params: Params) -> tuple[datetime | None, datetime | None]:
    """`date_range_start` inclusive, `date_range_end` exclusive; bare dates mean midnight."""
    start = date_param(params, "date_range_start")
    end = date_param(params, "date_range_end")
    return (start[0] if start else None), (end[0] if end else None)


# --- paging ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PageRequest:
    page: int
    page_length: int
    cursor: SortKey | None


def encode_cursor(key: SortKey) -> str:
    return base64.b64encode(json.dumps({"after": list(key)}).encode()).decode()


def decode_cursor(text: str) -> SortKey:
    """Raises: UpstreamError 400 `Invalid page_cursor` for anything this sandbox did not issue."""
    try:
        payload = json.loads(base64.b64decode(text, validate=True))
        after = payload["after"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise refiner_error(400, "Invalid page_cursor") from exc
    if not isinstance(after, list) or not after or not all(isinstance(v, str) for v in after):
        raise refiner_error(400, "Invalid page_cursor")
    return tuple(after)


def page_request(params: Params, *, cursors: bool) -> PageRequest:
    """Raises: UpstreamError 400 for a bad page, page_length or cursor."""
    page_text = first(params, "page") or "1"
    length_text = first(params, "page_length") or str(DEFAULT_PAGE_LENGTH)
    if not re.fullmatch(r"[0-9]{1,9}", page_text) or int(page_text) < 1:
        raise refiner_error(400, "page must be a positive integer")
    if not re.fullmatch(r"[0-9]{1,9}", length_text) or not 1 <= int(length_text) <= MAX_PAGE_LENGTH:
        raise refiner_error(400, f"page_length must be between 1 and {MAX_PAGE_LENGTH}")
    cursor_text = first(params, "page_cursor") if cursors else None
    cursor = decode_cursor(cursor_text) if cursor_text else None
    return PageRequest(int(page_text), int(length_text), cursor)


def paginate(
    items: Sequence[Row],
    request: PageRequest,
    key: Callable[[Row], SortKey],
    *,
    descending: bool,
    cursors: bool = True,
) -> tuple[list[Row], Row]:
    """Slice already ordered `items` by page or by cursor; returns the slice and `pagination`.

    Cursors are keyset positions, so rows written between two calls never shift a page.
    """
    total = len(items)
    if request.cursor is not None:
        after = request.cursor
        start = next(
            (
                index
                for index, item in enumerate(items)
                if (key(item) < after if descending else key(item) > after)
            ),
            total,
        )
    else:
        start = (request.page - 1) * request.page_length
    chunk = list(items[start : start + request.page_length])
    pagination: Row = {
        "items_count": total,
        "current_page": start // request.page_length + 1,
        "last_page": max(1, math.ceil(total / request.page_length)),
        "page_length": request.page_length,
    }
    if cursors:
        more = start + request.page_length < total
        pagination["next_page_cursor"] = encode_cursor(key(chunk[-1])) if more and chunk else None
    return chunk, pagination


# --- responses -------------------------------------------------------------------------


def response_time(row: Row, include: str) -> str | None:
    """The time date filters compare (§4.5): data reception, or last shown with `include=all`."""
    if include == "all":
        return row.get("last_data_reception_at") or row.get("last_shown_at")
    return row.get("last_data_reception_at")


def response_key(row: Row) -> SortKey:
    return (row.get("last_data_reception_at") or row.get("last_shown_at") or "", row["uuid"])


def _kind_allowed(row: Row, include: str) -> bool:
    if row.get("completed_at"):
        return True
    if include == "partials":
        return bool(row.get("last_data_reception_at")) and not row.get("dismissed_at")
    return include == "all"


def _data_filters(params: Params, prefix: str) -> dict[str, str]:
    pattern = re.compile(re.escape(prefix) + r"\[([^\]]+)\]")
    return {
        m[1]: values[0]
        for name, values in params.items()
        if (m := pattern.fullmatch(name)) and values
    }


def _matches(actual: Any, expected: str) -> bool:
    if isinstance(actual, list):
        return expected in [str(item) for item in actual]
    return actual is not None and str(actual).lower() == expected.lower()


@dataclass(frozen=True)
class ResponseFilter:
    forms: list[str]
    segments: list[str]
    tags: list[str]
    start: datetime | None
    end: datetime | None
    include: str
    search: str | None
    answers: dict[str, str]
    contact_traits: dict[str, str]
    account_traits: dict[str, str]


def response_filter(params: Params) -> ResponseFilter:
    """Read the shared `/responses` and `/reporting` filters.

    Raises:
        UpstreamError: 400 for bad UUIDs, dates or `include`.
    """
    include = first(params, "include") or "completed"
    if include not in INCLUDE:
        raise refiner_error(400, "Invalid include")
    start, end = window(params)
    return ResponseFilter(
        forms=uuids(params, "form_uuid", "form_uuids"),
        segments=uuids(params, "segment_uuid", "segment_uuids"),
        tags=uuids(params, "tag_uuid", "tag_uuids"),
        start=start,
        end=end,
        include=include,
        search=(first(params, "search") or "").strip().lower() or None,
        answers=_data_filters(params, "response_data"),
        contact_traits=_data_filters(params, "contact_data"),
        account_traits=_data_filters(params, "account_data"),
    )


def _in_window(row: Row, wanted: ResponseFilter) -> bool:
    if wanted.start is None and wanted.end is None:
        return True
    stamp = response_time(row, wanted.include)
    if stamp is None:
        return False
    moment = parse_stored(stamp)
    return (wanted.start is None or moment >= wanted.start) and (
        wanted.end is None or moment < wanted.end
    )


def _traits_match(traits: Row, wanted: dict[str, str]) -> bool:
    return all(_matches(traits.get(key), value) for key, value in wanted.items())


def select_responses(project: RefinerProject, wanted: ResponseFilter) -> list[Row]:
    """The project's responses passing every filter, newest first."""
    contacts = {contact["uuid"]: contact for contact in project.contacts}
    picked = []
    for row in project.responses:
        if not (_kind_allowed(row, wanted.include) and _in_window(row, wanted)):
            continue
        contact = contacts.get((row.get("contact") or {}).get("uuid", ""), {})
        segments = {segment["uuid"] for segment in contact.get("segments", [])}
        tags = set(project.response_tags.get(row["uuid"], []))
        account = contact.get("account") or {}
        if (
            (not wanted.forms or row["form"]["uuid"] in wanted.forms)
            and (not wanted.segments or segments & set(wanted.segments))
            and (not wanted.tags or tags & set(wanted.tags))
            and (not wanted.search or _search_hit(row, wanted.search))
            and _traits_match(row["data"], wanted.answers)
            and _traits_match(contact.get("attributes", {}), wanted.contact_traits)
            and _traits_match(account.get("attributes", {}), wanted.account_traits)
        ):
            picked.append(row)
    picked.sort(key=response_key, reverse=True)
    return picked


def _search_hit(row: Row, needle: str) -> bool:
    contact = row.get("contact") or {}
    fields = [
        row["uuid"],
        contact.get("uuid"),
        contact.get("remote_id"),
        contact.get("email"),
        contact.get("display_name"),
    ]
    return any(needle in str(value).lower() for value in fields if value)


def find_contact(project: RefinerProject, given: Mapping[str, Any]) -> Row | None:
    """Find by Refiner `uuid`, by your user `id` (`remote_id`), or by `email`, in that order."""
    for field, key in (("uuid", "uuid"), ("id", "remote_id"), ("email", "email")):
        value = given.get(field)
        if value:
            wanted = str(value).lower()
            return next(
                (c for c in project.contacts if str(c.get(key) or "").lower() == wanted), None
            )
    return None


def end_of_window(end: datetime | None, today: datetime) -> datetime:
    """The exclusive end the reporting default uses: the end of today."""
    if end is not None:
        return end
    return today.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
