"""A page of rows shaped in one pass over its bytes (which selections qualify:
gateway/spec/pages.py): the selection of plain fields, de-identification and encoding of every
row in C (`page` in gateway/native/_pages.c), the result's other entries as the whole path
makes them. Pure but for the policy's callbacks.

Its rows are orjson fragments, encoded as they are wherever the result is encoded; the
de-identification walk passes them by, since they were made under the same policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway import native
from gateway.calls.redaction import PLAIN, Redaction, key_verdict
from gateway.spec.compiled import RedactionRules
from gateway.spec.pages import PageAnswer, PageDecoder
from gateway.spec.reads import NotPruned
from gateway.upstream.answers import decode_response


def shaped_page(answer: PageAnswer, redaction: Redaction, max_bytes: int,
                extra: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The selected, de-identified result, or None where the pass declines: then the caller
    shapes `whole(answer)` as any other answer. `extra`: the tool's extra entries, which the
    caller adds to either result; counted here in the result's size."""
    loops = native.rows()
    if loops is None or (extra and answer.page.key in extra):
        return None  # (an extra entry in place of the rows: nothing to make them for)
    fields = _fields(answer.decoder, redaction.rules)
    if fields is None:
        return None  # the list itself is named by the policy: the whole path treats it whole
    page, raw = answer.page, answer.raw
    verdict, pseudonym, scrub = redaction.row_policy()
    made = loops.page(raw, page.path, fields, verdict, pseudonym, scrub, orjson.Fragment)
    if made is None:
        return None
    rows, size, start, end = made
    if page.entries:
        try:
            envelope = answer.decoder.envelope(raw[:start] + b"[]" + raw[end:])
        except NotPruned:
            return None
        result: dict[str, Any] = redaction({key: [] if evaluate is None else evaluate(envelope)
                                            for key, evaluate in page.entries})
    else:
        result = {"items": []}
    # The encoded result's exact size: a list of fragments is their bytes and the commas. Over
    # its bound the budget would trim, and may shorten long text, which it can do only to
    # objects: that result is left to the whole path.
    sized = {**result, **extra} if extra else result
    if len(orjson.dumps(sized)) + size + max(len(rows) - 1, 0) > max_bytes:
        return None
    result[page.key] = rows
    return result


def _fields(decoder: PageDecoder, rules: RedactionRules | None) -> tuple[Any, ...] | None:
    """The rows' fields as the pass takes them, each with the policy's verdict on its name, or
    None when the policy names the rows' key or a nested selection's (the whole path merges
    a named object's entries): worked out once a tool and policy."""
    known = decoder.policies
    if rules in known:
        fields: tuple[Any, ...] | None = known[rules]
        return fields

    def verdict(name: str) -> int:
        return PLAIN if rules is None else key_verdict(rules, name)

    page = decoder.page
    named = verdict(page.key) != PLAIN or any(
        subs and verdict(name) != PLAIN for name, _, _, subs in page.fields)
    fields = None if named else tuple(
        (as_json, key, PLAIN, tuple((sub_json, sub, verdict(sub_name))
                                    for sub_name, sub_json, sub in subs)) if subs
        else (as_json, key, verdict(name)) for name, as_json, key, subs in page.fields)
    known[rules] = fields
    return fields


def whole(answer: PageAnswer) -> Any:
    """The answer decoded as any other is (pruned where it can be, else whole).

    Raises:
        ResponseShapeError: it is not JSON.
    """
    return decode_response(answer.status, answer.headers, answer.raw,
                           pruned=answer.decoder.fallback).body
