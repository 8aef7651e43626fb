"""Retently list semantics: paging, sorting, date windows and attribute filters (§6).

Pure: takes query parameters as `{name: [values]}` and rows as dicts; raises the
documented 400 through `retently_error` on anything malformed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sandbox.dates import parse_input, parse_stored
from sandbox.errors import retently_error
from sandbox.store import RetentlyAccount

Params = dict[str, list[str]]
Row = dict[str, Any]

OBJECT_ID = re.compile(r"[0-9a-f]{24}")
OPERATORS = ("eq", "ne", "contains", "gt", "gte", "lt", "lte")
MAX_LIMIT = 1000

_ATTRIBUTE_KEY = re.compile(r"attributes\[(\d+)\]\[(name|op|operator|value)\]")


def first(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def require_object_id(value: str | None) -> str:
    """Raises: UpstreamError 400 unless `value` is a 24-hex id."""
    if value is None or not OBJECT_ID.fullmatch(value):
        raise retently_error(400)
    return value


def optional_object_id(params: Params, name: str) -> str | None:
    value = first(params, name)
    return None if value is None else require_object_id(value)


def _int_param(params: Params, name: str, default: int) -> int:
    value = first(params, name)
    if value is None or value == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise retently_error(400)
    return int(value)


@dataclass(frozen=True)
class Paging:
    page: int
    limit: int
    sort: str
    field: str
    descending: bool


def paging(
    params: Params, *, default_sort: str, sortable: dict[str, str], default_limit: int = 20
) -> Paging:
    """Read `page`, `limit` and `sort`; `sortable` maps accepted sort names to row keys.

    Raises:
        UpstreamError: 400 for page < 1, limit outside 1..1000 or an unknown sort field.
    """
    page = _int_param(params, "page", 1)
    limit = _int_param(params, "limit", default_limit)
    if page < 1 or not 1 <= limit <= MAX_LIMIT:
        raise retently_error(400)
    sort = first(params, "sort") or default_sort
    name = sort.removeprefix("-")
    if name not in sortable:
        raise retently_error(400)
    return Paging(page, limit, sort, sortable[name], sort.startswith("-"))


def sort_rows(rows: Sequence[Row], key: str, *, descending: bool, tie: str = "id") -> list[Row]:
    """Sort on one key (text ignoring case); rows without it go last, ties break on `tie`."""

    def order(row: Row) -> tuple[Any, str]:
        value = row[key]
        return (value.lower() if isinstance(value, str) else value, str(row.get(tie, "")))

    present = sorted((r for r in rows if r.get(key) is not None), key=order, reverse=descending)
    return present + [row for row in rows if row.get(key) is None]


def page_of(rows: Sequence[Row], paging: Paging, collection: str) -> Row:
    """The list body inside `data`: the slice plus page, pages, limit, sort, total."""
    total = len(rows)
    start = (paging.page - 1) * paging.limit
    return {
        collection: list(rows[start : start + paging.limit]),
        "page": paging.page,
        "pages": max(1, math.ceil(total / paging.limit)),
        "limit": paging.limit,
        "sort": paging.sort,
        "total": total,
    }


def date_window(params: Params) -> tuple[datetime | None, datetime | None]:
    """`startDate` and `endDate` as ISO-8601 or UNIX seconds; a bare end date covers its day.

    Raises:
        UpstreamError: 400 for a value that is not a date.
    """
    bounds: list[datetime | None] = []
    for name in ("startDate", "endDate"):
        value = first(params, name)
        if not value:
            bounds.append(None)
            continue
        try:
            moment, bare = parse_input(value, allow_unix=True)
        except ValueError as exc:
            raise retently_error(400) from exc
        if name == "endDate" and bare:
            moment += timedelta(days=1) - timedelta(microseconds=1)
        bounds.append(moment)
    return bounds[0], bounds[1]


def in_window(value: str | None, start: datetime | None, end: datetime | None) -> bool:
    if start is None and end is None:
        return True
    if value is None:
        return False
    moment = parse_stored(value)
    return (start is None or moment >= start) and (end is None or moment <= end)


@dataclass(frozen=True)
class Condition:
    name: str
    op: str
    value: str


def attribute_conditions(params: Params) -> tuple[list[Condition], str]:
    """Parse `attributes[i][name|op|operator|value]` and `match`.

    Raises:
        UpstreamError: 400 for an unknown operator, a missing name or a bad `match`.
    """
    parts: dict[int, dict[str, str]] = {}
    for key, values in params.items():
        found = _ATTRIBUTE_KEY.fullmatch(key)
        if found and values:
            slot = "op" if found[2] == "operator" else found[2]
            parts.setdefault(int(found[1]), {})[slot] = values[0]
    conditions = []
    for index in sorted(parts):
        part = parts[index]
        op = part.get("op", "eq")
        if not part.get("name") or op not in OPERATORS:
            raise retently_error(400)
        conditions.append(Condition(part["name"], op, part.get("value", "")))
    match = first(params, "match") or "all"
    if match not in ("all", "any"):
        raise retently_error(400)
    return conditions, match


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        return float(value)
    return None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_input(value, allow_unix=False)[0]
    except ValueError:
        return None


def compare(op: str, actual: Any, expected: str) -> bool:
    """Apply one sandbox operator: numbers compare as numbers, dates as dates, text ignores case."""
    if actual is None:
        return op == "ne"
    if isinstance(actual, list):
        items = [str(item).lower() for item in actual]
        hit = (
            any(expected.lower() in item for item in items)
            if op == "contains"
            else expected.lower() in items
        )
        return hit if op in ("eq", "contains") else not hit if op == "ne" else False
    if op in ("eq", "ne"):
        left, right = _number(actual), _number(expected)
        same = (
            left == right
            if left is not None and right is not None
            else (str(actual).lower() == expected.lower())
        )
        return same if op == "eq" else not same
    if op == "contains":
        return expected.lower() in str(actual).lower()
    ordered: tuple[Any, Any]
    left_n, right_n = _number(actual), _number(expected)
    left_d, right_d = _instant(actual), _instant(expected)
    if left_n is not None and right_n is not None:
        ordered = (left_n, right_n)
    elif left_d is not None and right_d is not None:
        ordered = (left_d, right_d)
    else:
        ordered = (str(actual).lower(), expected.lower())
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return checks[op](*ordered)


def matches_attributes(props: Iterable[Row], conditions: list[Condition], match: str) -> bool:
    """Whether customer properties (`name`/`label`/`value` items) satisfy the conditions."""
    if not conditions:
        return True
    by_name: dict[str, Any] = {}
    for prop in props:
        for key in (prop.get("name"), prop.get("label")):
            if isinstance(key, str):
                by_name.setdefault(key.lower(), prop.get("value"))
    results = (compare(c.op, by_name.get(c.name.lower()), c.value) for c in conditions)
    return all(results) if match == "all" else any(results)


def find_feedback(account: RetentlyAccount, feedback_id: str) -> Row:
    """Raises: UpstreamError 400 for a malformed id, 404 for an unknown one."""
    require_object_id(feedback_id)
    for row in account.feedback:
        if row["id"] == feedback_id:
            return row
    raise retently_error(404)
