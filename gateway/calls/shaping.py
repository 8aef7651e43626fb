"""The shaping steps of a call's pipeline (pipeline.py): select, then (after redaction and the
spec's extras) budget. Pure.

`select` (JMESPath) picks the result out of the upstream body; a list becomes `{"items": [...]}`
and a scalar `{"result": ...}`, because structuredContent must be an object. `budget` trims the
result to its item and byte bounds without ever producing invalid JSON, and records what it cut
under `truncated` with a hint on how to get the rest. Its JSON becomes the CallToolResult, as
structuredContent and as text (gateway/protocol/replies.py); `render_error` makes a failed one.
"""

from __future__ import annotations

import math
from typing import Any, Final

import orjson

from gateway.spec.jmes import Expression, search
from gateway.spec.models import Budget

LONG_TEXT: Final = 2000
"""Strings longer than this are shortened once trimming lists was not enough."""


def select(expression: Expression | None, body: Any) -> dict[str, Any]:
    """Apply the tool's JMESPath selection and wrap the value as a result object."""
    value = body if expression is None else search(expression, body)
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"items": value}
    return {"result": value}


def apply_budget(result: dict[str, Any], budget: Budget, *, default_items: int,
                 default_bytes: int, paging_hint: str) -> tuple[dict[str, Any], bytes]:
    """Trim a result to its bounds; returns the result and its JSON encoding.

    Lists at the top level are cut to `max_items` first, then shortened further (longest first)
    until the JSON fits in `max_bytes`; then long strings are shortened; as a last resort the
    data is dropped and only the note remains. Every cut is reported under `truncated`.
    """
    max_items = budget.max_items or default_items
    max_bytes = budget.max_bytes or default_bytes
    cuts: dict[str, dict[str, int]] = {}
    for key, value in result.items():
        if isinstance(value, list) and len(value) > max_items:
            cuts[key] = {"kept": max_items, "total": len(value)}
    if cuts:
        result = {k: (v[:max_items] if k in cuts else v) for k, v in result.items()}
    encoded = orjson.dumps(result)
    if len(encoded) <= max_bytes and not cuts:
        return result, encoded
    shortened = dropped = False
    if len(encoded) > max_bytes:
        result, cuts = _fit_lists(result, cuts, max_bytes)
        if len(orjson.dumps(_with_note(result, cuts, paging_hint, False))) > max_bytes:
            result, shortened = _shorten_strings(result), True
            if len(orjson.dumps(_with_note(result, cuts, paging_hint, True))) > max_bytes:
                result, cuts, dropped = {}, {}, True
    final = _with_note(result, cuts, paging_hint, shortened, dropped=dropped)
    return final, orjson.dumps(final)


def _fit_lists(result: dict[str, Any], cuts: dict[str, dict[str, int]],
               max_bytes: int) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """Binary-search, list by list (longest first), the longest prefix that fits."""
    result = dict(result)
    cuts = dict(cuts)
    lists = sorted((k for k, v in result.items() if isinstance(v, list) and v),
                   key=lambda k: -len(orjson.dumps(result[k])))
    for key in lists:
        full: list[Any] = result[key]
        total = cuts.get(key, {}).get("total", len(full))
        low, high = 0, len(full)
        while low < high:
            middle = (low + high + 1) // 2
            result[key] = full[:middle]
            if len(orjson.dumps(result)) + 200 <= max_bytes:
                low = middle
            else:
                high = middle - 1
        result[key] = full[:low]
        if low < total:
            cuts[key] = {"kept": low, "total": total}
        if len(orjson.dumps(result)) + 200 <= max_bytes:
            break
    return result, cuts


def _shorten_strings(value: Any) -> Any:
    if isinstance(value, str) and len(value) > LONG_TEXT:
        return value[:LONG_TEXT] + "…[shortened]"
    if isinstance(value, dict):
        return {k: _shorten_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten_strings(v) for v in value]
    return value


def _with_note(result: dict[str, Any], cuts: dict[str, dict[str, int]], paging_hint: str,
               shortened: bool, *, dropped: bool = False) -> dict[str, Any]:
    if not cuts and not shortened and not dropped:
        return result
    note: dict[str, Any] = {"lists": cuts} if cuts else {}
    if shortened:
        note["long_text_shortened_to"] = LONG_TEXT
    if dropped:
        note["dropped"] = "the result was too large to return even in part"
    note["hint"] = paging_hint
    return {**result, "truncated": note}


def render_error(message: str, retry_after_s: float | None = None) -> dict[str, Any]:
    """A failed CallToolResult the model can read and act on; when the failure names a wait,
    a client can also read it as `_meta.retryAfterSeconds` (whole seconds, at least 1)."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": message}], "isError": True}
    if retry_after_s is not None:
        result["_meta"] = {RETRY_AFTER_META_KEY: max(1, math.ceil(retry_after_s))}
    return result


RETRY_AFTER_META_KEY: Final = "retryAfterSeconds"
