"""Derived results: filter and aggregate items collected from paged upstream reads. Pure.

For tools the public API has no endpoint for (search, group-by statistics, distinct values),
a spec declares which pages to read (`collect`, executed by dispatch), which items to keep
(`filter`) and how to summarise them (`aggregate`). Everything is bounded by the spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from gateway.spec.compiled import CompiledAggregate, CompiledCondition
from gateway.spec.jmes import Expression, search
from gateway.spec.templates import ABSENT, RenderContext, render_value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """Compare numbers as numbers and dates/strings as strings; mixed kinds never match."""
    def check(actual: Any, expected: Any) -> bool:
        a, e = _number(actual), _number(expected)
        if a is not None and e is not None:
            return op(a, e)
        if isinstance(actual, str) and isinstance(expected, str):
            return op(actual, expected)
        return False
    return check


def _contains(actual: Any, expected: Any) -> bool:
    needle = _text(expected).casefold()
    if isinstance(actual, list):
        return any(needle in _text(item).casefold() for item in actual)
    return needle in _text(actual).casefold()


def _equals(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.casefold() == expected.casefold()
    a, e = _number(actual), _number(expected)
    if a is not None and e is not None:
        return a == e
    return bool(actual == expected)


def _member(actual: Any, expected: Any) -> bool:
    """Any of the expected values equals the actual value, or one of its items."""
    wanted = expected if isinstance(expected, list) else [expected]
    present = actual if isinstance(actual, list) else [actual]
    return any(_equals(a, w) for a in present for w in wanted)


OPERATORS: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "eq": _equals,
    "ne": lambda a, e: not _equals(a, e),
    "contains": _contains,
    "in": _member,
    "gte": _ordered(lambda a, e: a >= e),
    "lte": _ordered(lambda a, e: a <= e),
    "gt": _ordered(lambda a, e: a > e),
    "lt": _ordered(lambda a, e: a < e),
    "exists": lambda a, e: (a is not None and a != "" and a != []) == bool(e),
}


def matches(item: Any, conditions: Sequence[tuple[Expression, str, Any]]) -> bool:
    return all(OPERATORS[op](search(field, item), value)
               for field, op, value in conditions)


def active_conditions(conditions: Sequence[CompiledCondition], ctx: RenderContext
                      ) -> list[tuple[Expression, str, Any]]:
    """The conditions whose value is given for this call, with the value rendered."""
    active = []
    for condition in conditions:
        value = render_value(condition.value, ctx)
        if value is not ABSENT and value is not None:
            active.append((condition.field, condition.op, value))
    return active


def aggregate(items: Sequence[Any], spec: CompiledAggregate, ctx: RenderContext) -> dict[str, Any]:
    """Group items and compute each metric per group; an item in several groups counts in each.

    Raises:
        ValueError: the group-by value names no declared group.
    """
    by = render_value(spec.by, ctx)
    if by is ABSENT or by not in spec.groups:
        raise ValueError(f"group_by must be one of: {', '.join(spec.groups)}")
    key_of = spec.groups[by]
    periods: dict[str, Any] = {}
    previous: Sequence[Any] = ()
    if spec.compare_field is not None:
        days = render_value(spec.compare_days, ctx)
        if not isinstance(days, int) or days < 1:
            raise ValueError("the comparison period must be a whole number of days")
        items, previous, periods = _split_periods(items, spec.compare_field, days, ctx.now)
    current = _buckets(items, key_of)
    earlier = _buckets(previous, key_of)
    groups = []
    for key in [*current, *(k for k in earlier if k not in current)]:
        row: dict[str, Any] = {"key": key, **_metrics(current.get(key, []), spec)}
        if spec.compare_field is not None:
            before = _metrics(earlier.get(key, []), spec)
            for name, value in before.items():
                row[f"previous_{name}"] = value
                now_value = row[name]
                if isinstance(now_value, int | float) and isinstance(value, int | float):
                    row[f"change_{name}"] = round(now_value - value, 2)
        groups.append(row)
    order = spec.sort or ("count" if "count" in spec.metrics else None)
    if order is not None:
        groups.sort(key=lambda g: (-_sortable(g.get(order)), g["key"]))
    return {"group_by": by, "groups": groups, **periods}


def _sortable(value: Any) -> float:
    """A metric as a sort key: numbers as they are, anything else last."""
    number = _number(value)
    return number if number is not None and math.isfinite(number) else float("-inf")


def _buckets(items: Sequence[Any], key_of: Expression) -> dict[str, list[Any]]:
    buckets: dict[str, list[Any]] = {}
    for item in items:
        keys = search(key_of, item)
        for key in keys if isinstance(keys, list) else [keys]:
            buckets.setdefault("(none)" if key is None else str(key), []).append(item)
    return buckets


def _metrics(members: Sequence[Any], spec: CompiledAggregate) -> dict[str, Any]:
    row = {}
    for name, (function, field) in spec.metrics.items():
        values = [] if field is None else [search(field, m) for m in members]
        row[name] = metric(function, members, values)
    return row


def _split_periods(items: Sequence[Any], field: Expression, days: int, now: datetime
                   ) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Items of the last `days`, items of the `days` before, and the two periods' bounds."""
    start = now - timedelta(days=days)
    before = start - timedelta(days=days)
    current: list[Any] = []
    previous: list[Any] = []
    for item in items:
        moment = _moment(search(field, item))
        if moment is None or moment < before or moment > now:
            continue
        (current if moment >= start else previous).append(item)
    return current, previous, {
        "period": {"from": start.isoformat(timespec="seconds"), "to": now.isoformat(
            timespec="seconds")},
        "previous_period": {"from": before.isoformat(timespec="seconds"),
                            "to": start.isoformat(timespec="seconds")},
    }


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def metric(function: str, members: Sequence[Any], values: Sequence[Any]) -> Any:
    """One aggregate over a group. Numbers that are missing or not numeric are ignored."""
    if function == "count":
        return len(members)
    if function == "distinct":
        return len({_text(v) for v in values if v is not None})
    if function == "count_if":
        return sum(1 for v in values if v not in (None, False, "", [], {}))
    if function == "first":
        return next((v for v in values if v is not None), None)
    numbers = [n for n in (_number(v) for v in values) if n is not None and math.isfinite(n)]
    if function == "nps":
        if not numbers:
            return None
        promoters = sum(1 for n in numbers if n >= 9)
        detractors = sum(1 for n in numbers if n <= 6)
        return round(100 * (promoters - detractors) / len(numbers), 1)
    if not numbers:
        return None
    if function == "avg":
        return round(sum(numbers) / len(numbers), 2)
    if function == "sum":
        total = sum(numbers)
        return int(total) if all(isinstance(v, int) and not isinstance(v, bool)
                                 for v in values if v is not None) else total
    if function == "min":
        return min(numbers)
    if function == "max":
        return max(numbers)
    raise ValueError(f"unknown metric function {function!r}")


