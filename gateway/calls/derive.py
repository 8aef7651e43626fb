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

from gateway.spec.compiled import CompiledAggregate, CompiledCondition, CompiledGiven
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


Active = tuple[Expression, str | None, str, Any]
"""A condition on for this call: (field, key in the object the field gives or None, op, value)."""


def matches(item: Any, conditions: Sequence[Active], any_of: bool = False) -> bool:
    """Whether the item passes every condition, or with `any_of` one of them (no condition:
    it passes)."""
    outcomes = (OPERATORS[op](_read(item, field, key), value)
                for field, key, op, value in conditions)
    return any(outcomes) if any_of and conditions else all(outcomes)


def _read(item: Any, field: Expression, key: str | None) -> Any:
    found = search(field, item)
    if key is None:
        return found
    if not isinstance(found, dict):
        return None
    if key in found:
        return found[key]
    folded = key.casefold()
    return next((v for k, v in found.items() if isinstance(k, str) and k.casefold() == folded),
                None)


def active_conditions(conditions: Sequence[CompiledCondition | CompiledGiven],
                      ctx: RenderContext) -> list[Active]:
    """The conditions whose value is given for this call, with the value rendered.

    Raises:
        ValueError: conditions given as data that are not {field, op, value} over the fields
            and operators the spec offers.
    """
    active: list[Active] = []
    for condition in conditions:
        if isinstance(condition, CompiledGiven):
            active.extend(_given(condition, ctx))
            continue
        value = render_value(condition.value, ctx)
        if value is not ABSENT and value is not None:
            active.append((condition.field, None, condition.op, value))
    return active


def _given(entry: CompiledGiven, ctx: RenderContext) -> list[Active]:
    if entry.when is not None and _off(render_value(entry.when, ctx)):
        return []
    given = render_value(entry.given, ctx)
    if _off(given):
        return []
    if not isinstance(given, list):
        raise ValueError("The conditions given must be a list of {field, op, value}.")
    active: list[Active] = []
    for condition in given:
        op = condition.get("op") if isinstance(condition, dict) else None
        if op not in OPERATORS:
            raise ValueError(f"A condition is {{field, op, value}} with op one of "
                             f"{', '.join(OPERATORS)}; got {condition!r:.100}.")
        where = entry.resolve(condition.get("field"))
        if where is None:
            raise ValueError(f"Condition field {condition.get('field')!r:.80} is not one of: "
                             f"{', '.join(entry.names)}.")
        if condition.get("value") is not None:
            active.append((*where, str(op), condition["value"]))
    return active


def _off(value: Any) -> bool:
    return value is ABSENT or value in (None, False, "", [], {})


def match_any(match: Any, ctx: RenderContext) -> bool:
    """Whether a tool's `filter_match` asks for any condition rather than all of them.

    Raises:
        ValueError: it renders something other than all or any.
    """
    value = ABSENT if match is None else render_value(match, ctx)
    if value is ABSENT or value is None or value == "all":
        return False
    if value == "any":
        return True
    raise ValueError(f"filter_match must be all or any, not {value!r:.40}.")


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


